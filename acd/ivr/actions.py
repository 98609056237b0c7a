"""The IVR session's outputs: frozen dataclasses drained with ``IvrSession.actions()``.

Media actions (:class:`PlayPrompts`, :class:`StopPrompt`) come and go while the caller
navigates; :class:`Closed` is informational (logs, statistics). Exactly one
:class:`Terminal` action ends every session: the call is routed (:class:`RouteToQueue`,
:class:`RouteToEcho`, :class:`RouteExternal`), hung up by us (:class:`Hangup`), or the caller
left (:class:`Abandoned`). Every terminal action carries ``ivr_path``, the selections made on
the way (``("main:1", "sales-menu:2")``; ``"main:failure"`` after too many failed attempts,
``"main:closed"`` when the menu's hours were closed), which the agent's incoming-call panel
shows as "IVR selections".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "IvrAction",
    "PlayPrompts",
    "StopPrompt",
    "Closed",
    "Terminal",
    "RouteToQueue",
    "RouteToEcho",
    "RouteExternal",
    "Hangup",
    "Abandoned",
    "HANGUP_REASONS",
]

HANGUP_REASONS = ("option", "failure", "closed")


@dataclass(frozen=True)
class IvrAction:
    """Base of the IVR session's outputs."""


@dataclass(frozen=True)
class PlayPrompts(IvrAction):
    """Play ``names`` one after the other and call ``prompt_done(now, play_id=...)`` at the
    end. ``barge_in``: a digit will stop it (the session then sends :class:`StopPrompt`)."""

    names: tuple[str, ...]
    barge_in: bool
    play_id: int


@dataclass(frozen=True)
class StopPrompt(IvrAction):
    """Stop the prompts of ``play_id`` now (barge-in); no ``prompt_done`` is expected."""

    play_id: int


@dataclass(frozen=True)
class Closed(IvrAction):
    """Menu ``menu`` was entered outside its ``schedule``; its closed action follows.
    ``reopens_at`` is the next opening in the schedule's zone (None: never)."""

    menu: str
    schedule: str
    reopens_at: datetime | None


@dataclass(frozen=True)
class Terminal(IvrAction):
    """Base of the one action that ends a session."""

    ivr_path: tuple[str, ...] = field(default=(), kw_only=True)


@dataclass(frozen=True)
class RouteToQueue(Terminal):
    queue: str
    priority: int | None = None  # None: the queue's default priority
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteToEcho(Terminal):
    pass


@dataclass(frozen=True)
class RouteExternal(Terminal):
    number: str
    trunk: str
    ring_timeout_s: float = 30.0  # the far leg is CANCELled when not answered by then


@dataclass(frozen=True)
class Hangup(Terminal):
    """Play ``prompt`` (if any), then hang up. ``reason``: one of :data:`HANGUP_REASONS` —
    the caller chose it (``option``, also after an announcement), too many failed attempts
    (``failure``), or the menu was closed (``closed``)."""

    prompt: str | None
    reason: str


@dataclass(frozen=True)
class Abandoned(Terminal):
    """The caller hung up while in the IVR, in menu ``menu`` ("" if before the start)."""

    menu: str
