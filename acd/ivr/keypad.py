"""The plumbing shared by the caller's keypad dialogues (IVR menus, the callback number):
a state table driven by DTMF keys, prompt ends and one deadline, with its outputs drained by
``actions()``. Subclasses give ``TABLE`` (``(state, input) -> handler name`` or
:data:`IGNORE`), ``ERROR`` (raised for an input the table does not list: our misuse) and
``label`` (for messages)."""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any, ClassVar

__all__ = ["KeypadMachine", "IGNORE", "DTMF_KEYS"]

log = logging.getLogger(__name__)

IGNORE = "_ignore"
DTMF_KEYS = "0123456789*#ABCD"


class KeypadMachine:
    TABLE: ClassVar[dict[tuple[str, str], str]]
    ERROR: ClassVar[type[Exception]]

    def __init__(self) -> None:
        self.state = "idle"
        self.stats: Counter[str] = Counter()
        self._deadline: float | None = None
        self._play_id = 0
        self._actions: deque[Any] = deque()

    @property
    def label(self) -> str:
        return type(self).__name__

    # -- inputs ----------------------------------------------------------------------------

    def digit(self, d: str, now: float) -> None:
        """One DTMF key: ``0``-``9``, ``*``, ``#``, ``A``-``D``."""
        if not isinstance(d, str) or len(d) != 1 or d.upper() not in DTMF_KEYS:
            raise self.ERROR(f"{self.label}: {d!r} is not a DTMF key")
        self._input("digit", now, d.upper())

    def prompt_done(self, now: float, play_id: int | None = None) -> None:
        """The prompts of the last ``PlayPrompts`` finished; stale reports are ignored."""
        if play_id is not None and play_id != self._play_id:
            self.stats["stale_prompt_done"] += 1
            log.debug("%s: prompt_done for play %d ignored (current %d)", self.label, play_id, self._play_id)
            return
        self._input("prompt_done", now)

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Fire the deadline if it is due (an early call does nothing)."""
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._input("timer", now)

    def actions(self) -> list[Any]:
        """Drain the actions produced so far, in order."""
        out = list(self._actions)
        self._actions.clear()
        return out

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    # -- the table -------------------------------------------------------------------------

    def _input(self, inp: str, now: float, arg: str = "") -> None:
        handler = self.TABLE.get((self.state, inp))
        if handler is None:
            raise self.ERROR(f"{self.label}: {inp!r} while {self.state}")
        if handler == IGNORE:
            self.stats[f"{self.state}:{inp}"] += 1
            log.debug("%s: %s ignored while %s", self.label, inp, self.state)
            return
        self._accepted(inp)
        if arg:
            getattr(self, handler)(arg, now)
        else:
            getattr(self, handler)(now)

    def _accepted(self, inp: str) -> None:
        """Called before each handler runs (a subclass may reset per-input state)."""

    def _emit(self, action: Any) -> None:
        self._actions.append(action)
