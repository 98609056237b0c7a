"""The queued-callback dialogue: the caller confirms their number or enters another one.

A sans-IO state table, built like :mod:`acd.ivr.session`. ``CallbackEntry(caller_id, now)``
takes inputs — :meth:`start`, :meth:`digit`, :meth:`prompt_done`, :meth:`handle_timer` — and
returns actions through :meth:`actions`; :meth:`get_timer` is its one deadline.

States:

- ``idle``: before :meth:`start`.
- ``confirm-playing``: "We will call you back at 5 5 5 ..., press 1 to confirm, 2 for another
  number" (or "2 to enter it again" after an entry). A digit stops it (barge-in).
- ``confirm-waiting``: ``confirm_timeout_s`` for the answer; then it is played again.
- ``entry-playing``: "Please enter the number ..." (after "not valid" on a retry); barge-in.
- ``entry-waiting``: ``confirm_timeout_s`` for a first digit; then the prompt again.
- ``collecting``: digits until ``#``, ``max_digits`` of them, or ``digit_timeout_s`` without
  one (the entry then ends as it is). Fewer than ``min_digits``: "not valid", enter again.
- ``ended``: :class:`Confirmed` or :class:`Cancelled` was emitted; later inputs are ignored.

Timeouts and invalid entries (a wrong key on a confirm prompt, a too short number) share one
counter: the ``max_failures``-th cancels the dialogue, and so does ``*`` at any time.
The caller ID is the default number when it is ``min_digits``..``max_digits`` digits (a leading
``+`` is kept for dialling, not read out); empty, ``anonymous`` or anything else means no
default: entry comes first. Keys ``A``-``D`` are ignored while a number is entered.
An input the current state does not list raises :class:`InvalidInput` (our misuse).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from acd.errors import AcdError
from acd.ivr.keypad import IGNORE, KeypadMachine

__all__ = ["CallbackEntry", "ENTRY_TABLE", "PlayPrompts", "StopPrompt", "Confirmed",
           "Cancelled", "InvalidInput"]

log = logging.getLogger(__name__)

AT = "queue/callback-at"
CONFIRM_DEFAULT = "queue/callback-confirm-or-change"
CONFIRM_ENTERED = "queue/callback-confirm-or-reenter"
ENTER = "queue/callback-enter-number"
INVALID_NUMBER = "queue/callback-invalid"
INVALID_KEY = "queue/invalid-option"


class InvalidInput(AcdError):
    """An input the dialogue's current state does not accept, or a key that is not DTMF."""


@dataclass(frozen=True)
class PlayPrompts:
    """Play ``names`` in order, then report ``prompt_done(now, play_id)``; digits barge in."""

    names: tuple[str, ...]
    play_id: int


@dataclass(frozen=True)
class StopPrompt:
    """Stop the prompts of ``play_id`` now; no ``prompt_done`` is expected for them."""

    play_id: int


@dataclass(frozen=True)
class Confirmed:
    """Terminal: call back ``number`` (digits, with the caller ID's ``+`` if it had one)."""

    number: str


@dataclass(frozen=True)
class Cancelled:
    """Terminal: no callback. ``reason``: ``"caller"`` (``*``) or ``"failures"``."""

    reason: str


Action = PlayPrompts | StopPrompt | Confirmed | Cancelled

ENTRY_TABLE: dict[tuple[str, str], str] = {
    ("idle", "start"): "_start",

    ("confirm-playing", "prompt_done"): "_confirm_prompt_done",
    ("confirm-playing", "digit"): "_barge_in",
    ("confirm-waiting", "digit"): "_confirm_key",
    ("confirm-waiting", "timer"): "_no_input",
    ("confirm-waiting", "prompt_done"): IGNORE,  # late report of a prompt we stopped

    ("entry-playing", "prompt_done"): "_entry_prompt_done",
    ("entry-playing", "digit"): "_barge_in",
    ("entry-waiting", "digit"): "_entry_key",
    ("entry-waiting", "timer"): "_no_input",
    ("entry-waiting", "prompt_done"): IGNORE,
    ("collecting", "digit"): "_entry_key",
    ("collecting", "timer"): "_entry_done",
    ("collecting", "prompt_done"): IGNORE,

    ("ended", "digit"): IGNORE,  # pressed while the server acted on the outcome
    ("ended", "prompt_done"): IGNORE,
}


def dialable(caller_id: str, max_digits: int = 15) -> str:
    """The caller ID as a number to call back ("+33123" stays so), or "" if it is none."""
    number = caller_id.strip()
    return number if re.fullmatch(rf"\+?[0-9]{{1,{max_digits}}}", number) else ""


def say_digits(number: str) -> list[str]:
    """``digits/N`` for every digit of ``number`` (a ``+`` is not read)."""
    return [f"digits/{d}" for d in number if d.isdigit()]


class CallbackEntry(KeypadMachine):
    """One caller's callback-number dialogue, from :meth:`start` to one terminal action."""

    TABLE = ENTRY_TABLE
    ERROR = InvalidInput
    label = "callback entry"  # type: ignore[assignment]

    def __init__(self, caller_id: str, now: float, *, min_digits: int = 3, max_digits: int = 15,
                 digit_timeout_s: float = 5.0, confirm_timeout_s: float = 8.0,
                 max_failures: int = 3) -> None:
        if not 1 <= min_digits <= max_digits:
            raise ValueError(f"min_digits {min_digits} must be 1..max_digits ({max_digits})")
        super().__init__()
        self.min_digits = min_digits
        self.max_digits = max_digits
        self.digit_timeout_s = digit_timeout_s
        self.confirm_timeout_s = confirm_timeout_s
        self.max_failures = max_failures
        default = dialable(caller_id, max_digits)
        self.default = default if len(say_digits(default)) >= min_digits else ""
        self.created_at = now
        self.number = ""  # the number being confirmed
        self.outcome: Confirmed | Cancelled | None = None
        self.failures = 0
        self._entered = False  # the number being confirmed was typed (not the default)
        self._entry = ""

    # -- inputs ----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._input("start", now)

    @property
    def playing(self) -> bool:
        """A prompt plays and its ``prompt_done`` is awaited."""
        return self.state.endswith("-playing")

    # -- handlers --------------------------------------------------------------------------

    def _start(self, now: float) -> None:
        if self.default:
            self._confirm(self.default, entered=False)
        else:
            self._enter([ENTER])

    def _confirm_prompt_done(self, now: float) -> None:
        self.state = "confirm-waiting"
        self._deadline = now + self.confirm_timeout_s

    def _entry_prompt_done(self, now: float) -> None:
        self.state = "entry-waiting"
        self._deadline = now + self.confirm_timeout_s

    def _barge_in(self, d: str, now: float) -> None:
        self._actions.append(StopPrompt(self._play_id))
        self._deadline = now + self.confirm_timeout_s  # kept if the key changes nothing (A-D)
        if self.state == "confirm-playing":
            self.state = "confirm-waiting"
            self._confirm_key(d, now)
        else:
            self.state = "entry-waiting"
            self._entry_key(d, now)

    def _confirm_key(self, d: str, now: float) -> None:
        if d == "*":
            self._finish(Cancelled("caller"), now)
        elif d == "1":
            self._finish(Confirmed(self.number), now)
        elif d == "2":
            self._enter([ENTER])
        else:
            self._failure("invalid-key", now, [INVALID_KEY, *self._confirm_prompts()])

    def _entry_key(self, d: str, now: float) -> None:
        if d == "*":
            self._finish(Cancelled("caller"), now)
        elif d == "#":
            self._entry_done(now)
        elif d.isdigit():
            self._entry += d
            if len(self._entry) >= self.max_digits:
                self._entry_done(now)
            else:
                self.state = "collecting"
                self._deadline = now + self.digit_timeout_s
        else:
            self.stats["letter-ignored"] += 1  # A-D are not part of a phone number

    def _entry_done(self, now: float) -> None:
        entry, self._entry = self._entry, ""
        self._deadline = None
        if len(entry) < self.min_digits:
            self._failure("too-short", now, [INVALID_NUMBER, ENTER], entry=True)
        else:
            log.debug("callback entry: %d digit(s) entered", len(entry))
            self._confirm(entry, entered=True)

    def _no_input(self, now: float) -> None:
        if self.state == "confirm-waiting":
            self._failure("no-input", now, self._confirm_prompts())
        else:
            self._failure("no-input", now, [ENTER], entry=True)

    # -- steps -----------------------------------------------------------------------------

    def _confirm_prompts(self) -> list[str]:
        last = CONFIRM_ENTERED if self._entered else CONFIRM_DEFAULT
        return [AT, *say_digits(self.number), last]

    def _play(self, names: list[str], state: str) -> None:
        self._play_id += 1
        self._actions.append(PlayPrompts(tuple(names), self._play_id))
        self.state = state
        self._deadline = None

    def _confirm(self, number: str, *, entered: bool) -> None:
        self.number, self._entered = number, entered
        self._play(self._confirm_prompts(), "confirm-playing")

    def _enter(self, names: list[str]) -> None:
        self._entry = ""
        self._play(names, "entry-playing")

    def _failure(self, kind: str, now: float, replay: list[str], *, entry: bool = False) -> None:
        self.failures += 1
        self.stats[kind] += 1
        log.debug("callback entry: %s (%d/%d)", kind, self.failures, self.max_failures)
        if self.failures >= self.max_failures:
            self._finish(Cancelled("failures"), now)
        elif entry:
            self._enter(replay)
        else:
            self._play(replay, "confirm-playing")

    def _finish(self, outcome: Confirmed | Cancelled, now: float) -> None:
        self.state = "ended"
        self._deadline = None
        self.outcome = outcome
        log.info("callback entry: %s after %.1f s, %d failure(s)", outcome, now - self.created_at,
                 self.failures)
        self._actions.append(outcome)
