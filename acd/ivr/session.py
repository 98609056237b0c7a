"""One caller's walk through the IVR menus: a sans-IO state table.

``IvrSession(config, "main", now, clock_to_epoch=...)`` takes inputs — :meth:`start`,
:meth:`prompt_done`, :meth:`digit`, :meth:`handle_timer`, :meth:`hangup`, each with ``now``
(the adapter's monotonic clock) — and returns :mod:`acd.ivr.actions` through
:meth:`actions`. :meth:`get_timer` is its one deadline. Wall time is needed only for business
hours: ``clock_to_epoch(now)`` turns ``now`` into POSIX seconds, so tests control both clocks.

States and what happens in them:

- ``idle``: before :meth:`start` (a hangup there is an abandon).
- ``playing``: the menu prompt plays (again on a retry, after the invalid/no-input prompt).
  With ``barge_in`` a digit stops it (:class:`StopPrompt`) and is handled at once; without,
  digits are kept and handled in order when the prompt ends — once one of them decides
  (an option, an invalid entry), the rest are dropped.
- ``waiting``: the prompt ended; ``timeout_s`` for a first digit, then "no input".
- ``collecting``: the digits so far could still grow into a longer option ("1" when "10"
  exists); ``digit_timeout_s`` for the next one. At the timeout the entry is taken as it is
  (an option, or invalid). ``#`` after an entry that is an option ends it at once unless an
  option continues with ``#``.
- ``announcing``: an announcement plays (an option's ``announce``, a closed message); it
  cannot be interrupted and digits are dropped. Then ``then`` runs.
- ``ended``: a :class:`Terminal` action was emitted; later digits, prompt reports and
  hangups are legitimate races and are ignored (counted in :attr:`stats`).

Business hours are checked when a menu is entered (start, ``menu``, ``back``, an
announcement's ``then = <menu>``), not when it is replayed; a closed menu emits
:class:`Closed` and runs its ``closed`` action.

An input a state does not list raises :class:`InvalidInput` (our misuse: a digit before
``start``, ``start`` twice). Invalid entries and missing input share one counter per menu
visit: ``max_retries`` replays, then ``on_failure``. A ``prompt_done`` whose ``play_id`` is not
the current one (a late report of a stopped prompt) is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from acd.ivr.actions import Abandoned, Closed, Hangup, PlayPrompts, \
    RouteExternal, RouteToEcho, RouteToQueue, StopPrompt, Terminal
from acd.ivr.config import IvrConfig, Menu, MenuAction
from acd.ivr.errors import InvalidInput, IvrError
from acd.ivr.hours import say_opening
from acd.ivr.keypad import DTMF_KEYS, IGNORE, KeypadMachine

__all__ = ["IvrSession", "SESSION_TABLE", "DTMF_KEYS"]

log = logging.getLogger(__name__)

MAX_BUFFERED = 32  # digits kept during a prompt without barge-in

SESSION_TABLE: dict[tuple[str, str], str] = {
    ("idle", "start"): "_start",
    ("idle", "hangup"): "_caller_hangup",

    ("playing", "prompt_done"): "_prompt_done",
    ("playing", "digit"): "_digit_while_playing",
    ("playing", "hangup"): "_caller_hangup",

    ("waiting", "digit"): "_digit",
    ("waiting", "timer"): "_no_input",
    ("waiting", "prompt_done"): IGNORE,  # late report of a prompt stopped by barge-in
    ("waiting", "hangup"): "_caller_hangup",

    ("collecting", "digit"): "_digit",
    ("collecting", "timer"): "_entry_timeout",
    ("collecting", "prompt_done"): IGNORE,
    ("collecting", "hangup"): "_caller_hangup",

    ("announcing", "prompt_done"): "_announce_done",
    ("announcing", "digit"): IGNORE,  # announcements are not interruptible
    ("announcing", "hangup"): "_caller_hangup",

    ("ended", "digit"): IGNORE,  # pressed while we were routing the call
    ("ended", "prompt_done"): IGNORE,
    ("ended", "hangup"): IGNORE,  # the caller left after we routed
}


class IvrSession(KeypadMachine):
    """One caller in the IVR, from ``start`` to one :class:`Terminal` action."""

    TABLE = SESSION_TABLE
    ERROR = InvalidInput

    def __init__(self, config: IvrConfig, menu_name: str, now: float, *,
                 clock_to_epoch: Callable[[float], float]) -> None:
        super().__init__()
        self.config = config
        self.first_menu = config.menu(menu_name).name
        self.created_at = now
        self.clock_to_epoch = clock_to_epoch
        self.menu: Menu | None = None
        self.path: list[str] = []
        self.outcome: Terminal | None = None
        self._failures = 0
        self._entry = ""
        self._buffered: list[str] = []
        self._stack: list[str] = []  # menus to go "back" to
        self._then = ""  # what follows the current announcement
        self._then_reason = "option"
        self._hops = 0  # menus entered since the last input (loop guard)

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._input("start", now)

    def hangup(self, now: float) -> None:
        """The caller hung up."""
        self._input("hangup", now)

    # -- state -----------------------------------------------------------------------------

    @property
    def ivr_path(self) -> tuple[str, ...]:
        return tuple(self.path)

    @property
    def _name(self) -> str:
        return self.menu.name if self.menu else self.first_menu

    @property
    def label(self) -> str:
        return f"ivr {self._name}"

    def _accepted(self, inp: str) -> None:
        self._hops = 0

    def _menu(self) -> Menu:
        if self.menu is None:
            raise IvrError("ivr session has no current menu")
        return self.menu

    # -- handlers --------------------------------------------------------------------------

    def _start(self, now: float) -> None:
        log.debug("ivr %s: start", self.first_menu)
        self._enter(self.first_menu, now, push=False)

    def _caller_hangup(self, now: float) -> None:
        self.stats["abandoned"] += 1
        self._finish(Abandoned(self.menu.name if self.menu else "", ivr_path=self.ivr_path), now)

    def _prompt_done(self, now: float) -> None:
        self.state = "waiting"
        self._deadline = now + self._menu().timeout_s
        buffered, self._buffered = self._buffered, []
        for i, d in enumerate(buffered):
            if self.state not in ("waiting", "collecting"):
                self.stats["buffered_dropped"] += len(buffered) - i
                log.debug("ivr %s: %d buffered digit(s) dropped", self._name, len(buffered) - i)
                break
            self._digit(d, now)

    def _digit_while_playing(self, d: str, now: float) -> None:
        if self._menu().barge_in:
            self._emit(StopPrompt(self._play_id))
            self.state = "waiting"
            self._digit(d, now)
        elif len(self._buffered) < MAX_BUFFERED:
            self._buffered.append(d)
        else:
            self.stats["buffer_full"] += 1

    def _digit(self, d: str, now: float) -> None:
        menu = self._menu()
        entry = self._entry + d
        if any(k != entry and k.startswith(entry) for k in menu.options):
            self._entry = entry
            self.state = "collecting"
            self._deadline = now + menu.digit_timeout_s
            return
        self._entry = ""
        self._deadline = None
        if entry in menu.options:
            self._select(entry, now)
        elif d == "#" and entry[:-1] in menu.options:
            self._select(entry[:-1], now)  # '#' ends an entry
        else:
            self._failure("invalid", entry, now)

    def _entry_timeout(self, now: float) -> None:
        entry, self._entry = self._entry, ""
        if entry in self._menu().options:
            self._select(entry, now)
        else:
            self._failure("invalid", entry, now)

    def _no_input(self, now: float) -> None:
        self._failure("noinput", "", now)

    def _announce_done(self, now: float) -> None:
        then = self._then
        if then == "hangup":
            self._finish(Hangup(None, self._then_reason, ivr_path=self.ivr_path), now)
        elif then == "repeat":
            self._replay(now)
        elif then == "back":
            self._back(now)
        else:
            self._enter(then, now, push=True)

    # -- steps -----------------------------------------------------------------------------

    def _play(self, names: list[str] | tuple[str, ...], barge_in: bool, state: str) -> None:
        self._play_id += 1
        self._emit(PlayPrompts(tuple(names), barge_in, self._play_id))
        self.state = state
        self._deadline = None

    def _replay(self, now: float) -> None:
        menu = self._menu()
        self._play(menu.prompt, menu.barge_in, "playing")

    def _enter(self, name: str, now: float, *, push: bool) -> None:
        self._hops += 1
        if self._hops > len(self.config.menus) + 1:
            raise IvrError(f"ivr: menus loop without caller input ({' -> '.join(self.path)})")
        menu = self.config.menu(name)
        if push and self.menu is not None:
            self._stack.append(self.menu.name)
        self.menu = menu
        self._failures = 0
        self._entry = ""
        self._buffered = []
        schedule = self.config.schedule_of(menu)
        if schedule is not None:
            at = datetime.fromtimestamp(self.clock_to_epoch(now), UTC)
            if not schedule.is_open(at):
                reopens = schedule.next_change(at)
                log.info("ivr %s: closed (%s), reopens %s", name, schedule.name,
                         reopens.isoformat() if reopens else "never")
                self.stats["closed"] += 1
                self._emit(Closed(name, schedule.name, reopens))
                self.path.append(f"{name}:closed")
                opening = say_opening(reopens, at) if reopens and menu.closed.announce_opening \
                    else []
                self._run(menu.closed, now, "closed", opening)
                return
        log.debug("ivr %s: menu entered", name)
        self._replay(now)

    def _back(self, now: float) -> None:
        if self._stack:
            self._enter(self._stack.pop(), now, push=False)
        else:
            self._replay(now)

    def _select(self, key: str, now: float) -> None:
        menu = self._menu()
        self.path.append(f"{menu.name}:{key}")
        log.debug("ivr %s: option %s", menu.name, key)
        self._run(menu.options[key], now, "option", [])

    def _failure(self, kind: str, entry: str, now: float) -> None:
        menu = self._menu()
        self._failures += 1
        self.stats[kind] += 1
        log.debug("ivr %s: %s %r (%d/%d)", menu.name, kind, entry, self._failures,
                  menu.max_retries + 1)
        if self._failures > menu.max_retries:
            self.path.append(f"{menu.name}:failure")
            self._run(menu.on_failure, now, "failure", [])
            return
        first = menu.invalid_prompt if kind == "invalid" else menu.noinput_prompt
        self._play([first, *menu.prompt] if first else menu.prompt, menu.barge_in, "playing")

    def _run(self, action: MenuAction, now: float, reason: str, opening: list[str]) -> None:
        """Carry out ``action``; ``reason`` is why (option, failure, closed)."""
        kind = action.action
        path = self.ivr_path
        if kind == "queue":
            self._finish(RouteToQueue(action.target, action.priority, action.skills,
                                      ivr_path=path), now)
        elif kind == "echo":
            self._finish(RouteToEcho(ivr_path=path), now)
        elif kind == "external":
            self._finish(RouteExternal(action.number, action.trunk, action.ring_timeout_s, ivr_path=path), now)
        elif kind == "hangup" and not opening:
            prompt = action.prompt[0] if action.prompt else None
            self._finish(Hangup(prompt, reason, ivr_path=path), now)
        elif kind in ("hangup", "announce"):
            self._then = action.then or "hangup"
            self._then_reason = reason
            self._play([*action.prompt, *opening], False, "announcing")
        elif kind == "repeat":
            self._replay(now)
        elif kind == "back":
            self._back(now)
        elif kind == "menu":
            self._enter(action.target, now, push=True)
        else:
            raise IvrError(f"ivr {self._name}: unknown action {kind!r}")

    def _finish(self, outcome: Terminal, now: float) -> None:
        self.state = "ended"
        self._deadline = None
        self._buffered = []
        self.outcome = outcome
        log.info("ivr %s: %s after %.1f s, path %s", self._name, type(outcome).__name__,
                 now - self.created_at, ",".join(outcome.ivr_path) or "-")
        self._emit(outcome)
