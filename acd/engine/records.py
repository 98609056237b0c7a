"""Records for persistence and statistics, emitted as actions (the store is another module).

Times in records are epoch seconds: ``Engine(config, epoch=...)`` gives the epoch of the
engine's time 0 (the server passes ``time.time() - loop.time()``).

``QueueLogEntry`` follows Asterisk's queue_log (``epoch|callid|queue|agent|EVENT|data…``;
"NONE" where Asterisk writes NONE; durations in whole seconds except RINGNOANSWER and
RINGCANCELED in milliseconds)::

    ENTERQUEUE|url|callerid|position
    CONNECT|holdtime|agent leg id|ringtime
    COMPLETECALLER|holdtime|calltime|origposition      (caller hung up)
    COMPLETEAGENT|holdtime|calltime|origposition       (agent hung up)
    ABANDON|position|origposition|waittime
    EXITWITHTIMEOUT|position|origposition|waittime
    EXITEMPTY|position|origposition|waittime
    EXITWITHKEY|key|position|origposition|waittime
    RINGNOANSWER|ringtime_ms                           (also written for a declined offer)
    RINGCANCELED|ringtime_ms                           (ring-all loser, caller gone)
    TRANSFER|target|context|holdtime|calltime|origposition  (blind transfer by the agent)
    ADDMEMBER|   REMOVEMEMBER|   PAUSE|reason   UNPAUSE|reason   (callid NONE, per queue)
    FULL|   JOINEMPTY|                                 (join refused)

UNPAUSE carries the reason of the break that ends. Durations are truncated to whole
seconds; holdtime and waittime are measured from the call's enter time (kept through a
reject, a requeue and an overflow with keep_enter_time). Homeline additions, ignored by Asterisk tools:
``CALLBACK|position|origposition|waittime|number`` when a caller chooses a callback, and
``CALLBACKFAILED|attempt|attempts|number`` for each dial that did not reach the customer
(then COMPLETEAGENT; the callback keeps its place for the next dial). A call
requeued because its agent's connection was lost gets COMPLETEAGENT then ENTERQUEUE again.
A connected call ended by reconciliation is closed with COMPLETECALLER (CallRecord outcome
"reconciled").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from acd.engine.actions import Action

__all__ = [
    "QueueLogEntry",
    "CallRecord",
    "OfferRecord",
    "AgentStateRecord",
    "format_queue_log_line",
    "CALL_OUTCOMES",
    "OFFER_OUTCOMES",
]

NONE = "NONE"

CALL_OUTCOMES = (
    "answered",  # connected and completed by either side
    "abandoned",  # the caller hung up while waiting or ringing
    "timeout",  # max wait, overflow "hangup"
    "overflow",  # max wait, overflow "voicemail" (message recording)
    "exit-key",  # the caller pressed the exit key
    "leave-empty",  # the last member logged out (leave_when_empty), overflow not "queue"
    "rejected",  # join refused (full, join-empty)
    "reconciled",  # the server stopped confirming the call
    "callback-expired",  # a callback waited longer than expire_s
    "callback-failed",  # the customer of a callback was not reached
    "transferred",  # the agent transferred the call out to a number
)
OFFER_OUTCOMES = ("answered", "rejected", "no-answer", "cancelled")


@dataclass(frozen=True)
class QueueLogEntry(Action):
    """One queue_log line; ``data`` holds the event's fields in Asterisk's order."""

    time: float
    call_id: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()


def _clean(field: str) -> str:
    """Keep a field on one line and in one column ('|' and control characters become '_')."""
    if field.isprintable() and "|" not in field:
        return field
    return "".join("_" if c == "|" or not c.isprintable() else c for c in field)


def format_queue_log_line(entry: QueueLogEntry) -> str:
    """``epoch|callid|queue|agent|EVENT|data1|data2|…`` as Asterisk writes it (no newline).

    An event without data still ends with ``|`` (Asterisk formats an empty data string).
    """
    data = entry.data or ("",)
    parts = (str(math.floor(entry.time)), entry.call_id or NONE, entry.queue or NONE,
             entry.agent or NONE, entry.event, *data)
    return "|".join(_clean(p) for p in parts)


@dataclass(frozen=True)
class CallRecord(Action):
    """The CDR of one call, emitted once when it ends (times are epoch seconds).

    ``wait_s`` runs from ``entered_at`` to the answer (or the end when unanswered);
    ``ewt_at_entry_s`` is the estimate made when the call entered (announced to the caller
    when ``ewt_announced``), to be compared with ``wait_s`` for answered calls.
    """

    call_id: str
    caller: str
    queue: str
    first_queue: str
    entered_at: float
    answered_at: float | None
    ended_at: float
    agent: str
    wait_s: float
    talk_s: float
    outcome: str
    reason: str
    ewt_at_entry_s: float | None
    ewt_announced: bool
    origposition: int
    priority: int
    overflowed_from: tuple[str, ...] = ()
    callback: bool = False
    test: bool = False
    transfers: tuple[str, ...] = ()  # blind transfers: "queue:NAME", "agent:ID", "number:N"
    ivr_path: tuple[str, ...] = ()  # IVR selections before the queue
    skills: tuple[str, ...] = ()  # skills the call required besides the queue's
    callback_number: str = ""
    callback_attempts: int = 0  # dials made to the customer of a callback


@dataclass(frozen=True)
class OfferRecord(Action):
    """One offer of a call to an agent and how it ended."""

    agent: str
    call_id: str
    queue: str
    offered_at: float
    ended_at: float
    outcome: str
    ring_s: float
    test: bool = False


@dataclass(frozen=True)
class AgentStateRecord(Action):
    """An agent's state change; ``duration_s`` is the time spent in ``from_state``.

    States: logged-out, available, reserved, on-call, wrap-up, break. ``reason`` is the break
    reason, the logout reason, or what caused the change ("answered", "timeout", ...).
    ``pending`` names a deferred logout/break ("logout", "break:lunch", "recovery") so that
    wallboards show it.
    """

    time: float
    agent: str
    from_state: str
    to_state: str
    reason: str
    duration_s: float
    pending: str = ""
    call_id: str = ""
    test: bool = False
