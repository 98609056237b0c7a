"""The engine's outputs: frozen dataclasses drained with ``Engine.actions()``.

The server carries them out in order (media, SIP legs, pushes to the agents' web app); the
records of :mod:`acd.engine.records` are actions too and go to the store. Every time the
engine ends or moves a call by itself, an action says so with a reason: ``ExitQueue``
(max wait, exit key, leave-when-empty), ``MoveQueue`` (overflow to another queue),
``CallbackScheduled``, ``HangupCall`` (reconciliation, expired callback), ``JoinRejected``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Action",
    "StartMusic",
    "Ringback",
    "Announce",
    "JoinRejected",
    "ExitQueue",
    "MoveQueue",
    "CallbackScheduled",
    "HangupCall",
    "OfferCall",
    "CancelOffer",
    "RejectLateAnswer",
    "ConnectCall",
    "DropAgentLeg",
    "TransferOut",
    "ConsultStarted",
    "ConsultEnded",
]


@dataclass(frozen=True)
class Action:
    """Base of the engine's outputs."""


# -- the caller's side ----------------------------------------------------------------------


@dataclass(frozen=True)
class StartMusic(Action):
    """Play music on hold (``music`` is the class) to a waiting caller."""

    call: str
    music: str


@dataclass(frozen=True)
class Ringback(Action):
    """Play ringback to the caller while an agent is being offered the call."""

    call: str


@dataclass(frozen=True)
class Announce(Action):
    """Play a prompt to a waiting caller, then resume music.

    ``kind``: "position" (``position`` and, with announce_holdtime, ``ewt_s``; ``ewt_s`` is
    None when no agent is staffed), "periodic" (``prompt``), "callback-offer" (``prompt``,
    press ``key`` to be called back keeping the position).
    """

    call: str
    queue: str
    kind: str
    position: int | None = None
    ewt_s: float | None = None
    prompt: str = ""
    key: str = ""


@dataclass(frozen=True)
class JoinRejected(Action):
    """The call did not enter: ``reason`` "full" (max_len) or "join-empty"."""

    call: str
    queue: str
    reason: str


@dataclass(frozen=True)
class ExitQueue(Action):
    """The caller leaves the engine; the server plays ``prompt`` and does ``action``.

    ``reason``: "timeout" (max_wait_s), "exit-key", "leave-empty". ``action``: "hangup",
    "voicemail" (``target`` = mailbox) or "continue" (the dial plan; ``target`` = exit_target).
    """

    call: str
    queue: str
    reason: str
    action: str
    target: str = ""
    prompt: str = ""
    digit: str = ""


@dataclass(frozen=True)
class MoveQueue(Action):
    """The caller was moved to another queue (overflow); the server may play ``prompt``."""

    call: str
    from_queue: str
    to_queue: str
    reason: str
    prompt: str = ""


@dataclass(frozen=True)
class CallbackScheduled(Action):
    """The caller will be called back at ``number`` keeping the position; play ``prompt`` and
    hang up the caller leg."""

    call: str
    queue: str
    number: str
    prompt: str = ""


@dataclass(frozen=True)
class HangupCall(Action):
    """The engine ended the call by itself (``reason`` "reconciled", "callback-expired"):
    tear down whatever remains of it (caller leg and ``agent``'s leg, if any)."""

    call: str
    reason: str
    agent: str = ""


# -- the agent's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class OfferCall(Action):
    """Ring ``agent`` for ``call``; the engine times the offer out after ``ring_timeout_s``.

    For a callback, ``callback_number`` is set: on answer the server dials the customer.
    """

    agent: str
    call: str
    queue: str
    ring_timeout_s: float
    caller: str = ""
    callback_number: str = ""
    ivr_path: tuple[str, ...] = ()  # the caller's IVR selections (the agent's call panel)
    skills: tuple[str, ...] = ()  # skills the call asked for besides the queue's


@dataclass(frozen=True)
class CancelOffer(Action):
    """Stop ringing ``agent`` for ``call`` (``reason``: "answered-elsewhere", "timeout",
    "caller-gone", "connection-lost")."""

    agent: str
    call: str
    reason: str


@dataclass(frozen=True)
class RejectLateAnswer(Action):
    """``agent`` answered an offer that is no longer theirs: hang up the agent's leg.

    ``reason``: "no-offer" (timed out, cancelled or rejected before), "answered-elsewhere",
    "call-ended", "unknown-call".
    """

    agent: str
    call: str
    reason: str


@dataclass(frozen=True)
class ConnectCall(Action):
    """Bridge the caller with ``agent``'s leg ``leg`` (for a callback: dial the customer)."""

    call: str
    agent: str
    leg: str = ""
    callback_number: str = ""


@dataclass(frozen=True)
class DropAgentLeg(Action):
    """Hang up ``agent``'s leg of ``call`` (``reason``): its connection was lost (the caller
    goes back to the queue) or the agent transferred the call ("transferred")."""

    agent: str
    call: str
    reason: str


@dataclass(frozen=True)
class TransferOut(Action):
    """The agent transferred ``call`` to an outside ``number``: the server bridges the
    caller's leg to it through a trunk; the call has left the ACD (outcome "transferred")."""

    call: str
    number: str
    agent: str


@dataclass(frozen=True)
class ConsultStarted(Action):
    """Attended transfer: ``agent`` consults (internal call ``consult``, queued in ``queue`` or
    offered to ``target``) while ``call``'s caller waits on hold."""

    call: str
    consult: str
    agent: str
    queue: str
    target: str = ""


@dataclass(frozen=True)
class ConsultEnded(Action):
    """The consultation ``consult`` about ``call`` is over: "completed" (the caller now talks
    with ``target``), "cancelled", "caller-hangup", or how the consultation call ended."""

    call: str
    consult: str
    agent: str
    target: str
    reason: str

