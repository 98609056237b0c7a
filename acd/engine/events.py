"""The engine's inputs: frozen dataclasses given to ``Engine.handle(event, now)``.

Agent events come from the agents' web app (through the server), call events from the SIP
side of the server. Ids are strings the server chooses: agent ids are the ``[agents]`` table
names, call ids are the caller leg's id (unique while the call lives; a call id may enter
again after its call ended, which starts a new call). Events carry no time: ``now`` is the
second argument of ``handle``.

Events that can legitimately race with the engine (an answer after the offer timed out, a
hangup for a call already gone, a second "wrap-up done") are accepted and handled explicitly
(with an action where the server must act, e.g. ``RejectLateAnswer``, and a counter in
``Engine.stats``); events that can only come from a bug raise ``InvalidTransition``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Event",
    "AgentLogin",
    "AgentLogout",
    "AgentBreak",
    "AgentReady",
    "WrapUpDone",
    "FlagDifficult",
    "AgentConnectionLost",
    "AgentConnectionRestored",
    "CallEnters",
    "CallerHangup",
    "AgentHangup",
    "CallerDigit",
    "CallbackRequest",
    "CallbackFailed",
    "TransferCall",
    "ConsultCall",
    "ConsultComplete",
    "ConsultCancel",
    "OfferAnswered",
    "OfferRejected",
    "CallsAlive",
    "AGENT_INPUTS",
    "CALL_INPUTS",
]


@dataclass(frozen=True)
class Event:
    """Base of the engine's inputs."""


# -- agents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentLogin(Event):
    """Log in to all configured queues, or only to ``queues`` (a subset of them)."""

    agent: str
    queues: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AgentLogout(Event):
    """Log out; while reserved, on a call or in wrap-up the logout waits for the call's end."""

    agent: str
    reason: str = ""


@dataclass(frozen=True)
class AgentBreak(Event):
    """Go on break with a configured reason; deferred to the end of the current call."""

    agent: str
    reason: str


@dataclass(frozen=True)
class AgentReady(Event):
    """End a break (become available), or cancel a pending break/logout during a call."""

    agent: str


@dataclass(frozen=True)
class WrapUpDone(Event):
    """The agent finished wrap-up before its timer."""

    agent: str


@dataclass(frozen=True)
class FlagDifficult(Event):
    """The agent marks the current (or just finished) call difficult: a recovery break follows."""

    agent: str


@dataclass(frozen=True)
class AgentConnectionLost(Event):
    """The agent's signalling connection (WebSocket) dropped; a grace period starts."""

    agent: str


@dataclass(frozen=True)
class AgentConnectionRestored(Event):
    agent: str


# -- calls --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallEnters(Event):
    """A caller enters a queue (from the dial plan or, later, an IVR)."""

    call: str
    queue: str
    caller: str = ""  # caller id number; also the default callback number
    priority: int | None = None  # None: the queue's default priority
    url: str = ""  # Asterisk's ENTERQUEUE url field
    test: bool = False  # robot caller (load tests): records flagged
    skills: tuple[str, ...] = ()  # skills the call needs besides the queue's (from the IVR)
    ivr_path: tuple[str, ...] = ()  # the IVR selections made on the way (shown to the agent)


@dataclass(frozen=True)
class CallerHangup(Event):
    call: str


@dataclass(frozen=True)
class AgentHangup(Event):
    agent: str
    call: str


@dataclass(frozen=True)
class CallerDigit(Event):
    """A DTMF key from a waiting caller (exit key, callback key)."""

    call: str
    digit: str


@dataclass(frozen=True)
class CallbackRequest(Event):
    """A waiting caller asks to be called back (e.g. from an IVR); keeps the queue position."""

    call: str
    number: str = ""  # "" = the caller id


@dataclass(frozen=True)
class CallbackFailed(Event):
    """The customer of a connected callback could not be reached."""

    call: str


@dataclass(frozen=True)
class TransferCall(Event):
    """Blind transfer by the connected agent: to a ``queue`` (the caller keeps their enter
    time), to another available agent ``to_agent`` (offered to them at once; back to the
    queue if they do not answer), or out to ``number``. Exactly one is set."""

    agent: str
    call: str
    queue: str = ""
    to_agent: str = ""
    number: str = ""


@dataclass(frozen=True)
class ConsultCall(Event):
    """Attended transfer, step 1: the connected agent consults ``to_agent`` (who must be
    available) or the next agent of ``queue``; the caller waits on hold."""

    agent: str
    call: str
    queue: str = ""
    to_agent: str = ""


@dataclass(frozen=True)
class ConsultComplete(Event):
    """The caller of ``call`` goes to the consulted agent; this agent's part ends."""

    agent: str
    call: str


@dataclass(frozen=True)
class ConsultCancel(Event):
    """The consultation ends; the caller is back with this agent."""

    agent: str
    call: str


@dataclass(frozen=True)
class OfferAnswered(Event):
    """The agent answered an ``OfferCall``; ``leg`` is the agent leg's id (queue_log CONNECT)."""

    agent: str
    call: str
    leg: str = ""


@dataclass(frozen=True)
class OfferRejected(Event):
    """The agent declined an ``OfferCall`` (or its leg failed)."""

    agent: str
    call: str
    reason: str = ""


# -- liveness -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallsAlive(Event):
    """The server's periodic list of the engine's calls whose caller leg is still up.

    A queued, offered or connected call absent from these reports for
    ``[acd] reconcile_after_s`` is ended with reason "reconciled".
    """

    calls: frozenset[str]


# event type -> agent table input (agent events) or call table input (call events)
AGENT_INPUTS: dict[type[Event], str] = {
    AgentLogin: "login",
    AgentLogout: "logout",
    AgentBreak: "break",
    AgentReady: "ready",
    WrapUpDone: "wrapup_done",
    FlagDifficult: "flag_difficult",
    AgentConnectionLost: "conn_lost",
    AgentConnectionRestored: "conn_restored",
}

CALL_INPUTS: dict[type[Event], str] = {
    CallerHangup: "caller_hangup",
    AgentHangup: "agent_hangup",
    CallerDigit: "digit",
    CallbackRequest: "callback_request",
    CallbackFailed: "callback_failed",
    TransferCall: "transfer",
    ConsultCall: "consult",
    ConsultComplete: "consult_complete",
    ConsultCancel: "consult_cancel",
    OfferAnswered: "answer",
    OfferRejected: "reject",
}
