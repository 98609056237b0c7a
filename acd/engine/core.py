"""The engine's shared state: errors, the agent/call/offer entities, timers and emitters.

:class:`EngineCore` owns the data; :mod:`acd.engine.agents`, :mod:`acd.engine.calls` and
:mod:`acd.engine.routing` add the state tables and their handlers as mixins, and
:class:`acd.engine.engine.Engine` puts them together.

Timers: one heap of ``(deadline, n, owner, kind)`` for the whole engine. An owner (agent or
call) keeps ``timers[kind] = deadline`` for its armed timers; cancelling pops that entry and
the heap entry becomes stale (skipped when it surfaces). A timer fires as the table input
``"t_" + kind`` at its own deadline, so cadences stay exact even if the driver is late.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from acd.engine.actions import Action
from acd.engine.estimator import Estimate, WaitEstimator
from acd.engine.queues import QueueState
from acd.engine.records import QueueLogEntry
from acd.engine.strategies import strategy_class
from acd.errors import AcdError

if TYPE_CHECKING:
    from acd.engine.config import AgentConfig, EngineConfig

__all__ = [
    "EngineError",
    "InvalidTransition",
    "UnknownAgent",
    "UnknownQueue",
    "UnknownBreakReason",
    "DuplicateCall",
    "ClockError",
    "InvariantViolation",
    "Agent",
    "Call",
    "Offer",
    "EngineCore",
    "AGENT_STATES",
    "CALL_STATES",
    "IGNORE",
]

log = logging.getLogger(__name__)

AGENT_STATES = ("logged-out", "available", "reserved", "on-call", "wrap-up", "break")
CALL_STATES = ("ivr", "queued", "offered", "connected", "callback-pending", "callback-retry",
               "ended")
IGNORE = "_ignore"  # table value: a legitimate race or duplicate, counted in Engine.stats
ENDED_MEMORY = 20_000  # ended calls remembered to answer late events precisely


class EngineError(AcdError):
    """Base of the engine's errors: misuse by the caller of ``Engine`` (or an engine bug)."""


class InvalidTransition(EngineError):
    """An input the current state's table does not list."""

    def __init__(self, what: str, name: str, state: str, inp: str) -> None:
        self.what, self.name, self.state, self.input = what, name, state, inp
        super().__init__(f"{what} {name}: {inp} not allowed in state {state}")


class UnknownAgent(EngineError):
    pass


class UnknownQueue(EngineError):
    pass


class UnknownBreakReason(EngineError):
    pass


class DuplicateCall(EngineError):
    """``CallEnters`` for a call id that is still live."""


class ClockError(EngineError):
    """``now`` went backwards."""


class InvariantViolation(EngineError):
    pass


@dataclass(eq=False, slots=True)
class Offer:
    agent: Agent
    call: Call
    at: float
    queue: str


@dataclass(eq=False, slots=True)
class Agent:
    id: str
    cfg: AgentConfig
    index: int
    state: str = "logged-out"
    since: float = 0.0
    reason: str = ""  # break reason while on break
    levels: dict[str, int] = field(default_factory=dict)  # logged-in queues -> effective level
    offer: Offer | None = None
    call: Call | None = None  # on-call and wrap-up
    connected: bool = True
    logout_pending: bool = False
    logout_reason: str = ""
    break_pending: str = ""
    recovery_pending: bool = False
    no_answer_streak: int = 0
    calls_answered: int = 0
    talk_s: float = 0.0
    available_since: float = 0.0
    handle_start: float = 0.0
    work_queue: str = ""  # queue of the call being handled (wrap-up, AHT)
    token: int = 0  # bumped when routability changes (stale pool heap entries)
    applied: tuple[bool, bool, bool] = (False, False, False)  # logged, staffed, routable
    timers: dict[str, float] = field(default_factory=dict)

    @property
    def routable(self) -> bool:
        return self.state == "available" and self.connected

    def pending(self) -> str:
        if self.logout_pending:
            return "logout"
        if self.break_pending:
            return "break:" + self.break_pending
        return "recovery" if self.recovery_pending else ""


@dataclass(eq=False, slots=True)
class Call:
    id: str
    seq: int
    caller: str
    url: str
    priority: int
    test: bool
    entered_at: float  # start of this call (CDR)
    enter_time: float  # ordering time; kept through rejects, requeues, kept overflows
    queue: str
    first_queue: str
    queue_entered_at: float = 0.0
    state: str = "queued"
    boost: int = 0  # 1 = ahead of its priority class (requeued after a lost agent)
    entry: tuple[Any, ...] | None = None  # sort entry in its queue
    min_level: int = 1
    widen_step: int = 0
    offers: dict[str, Offer] = field(default_factory=dict)
    agent: Agent | None = None
    declined: dict[str, float] = field(default_factory=dict)  # agent -> not before
    origposition: int = 0
    estimate: Estimate | None = None  # made at entry
    ewt_announced: bool = False
    last_position: int = 0
    callback_offered: bool = False
    callback: bool = False
    callback_number: str = ""
    leg_up: bool = True  # False while a callback waits (no caller leg)
    timeout_pending: bool = False
    expire_pending: bool = False
    ringing: bool = False
    answered_at: float | None = None  # first answer (CDR)
    connected_at: float = 0.0  # current connection
    talk_s: float = 0.0  # accumulated over connections
    agent_id: str = ""  # the last agent connected (CDR)
    leg: str = ""
    last_seen: float = 0.0
    overflowed_from: list[str] = field(default_factory=list)
    requeued: bool = False
    skills: tuple[str, ...] = ()  # required besides the queue's (sorted)
    transfers: list[str] = field(default_factory=list)
    consult: str = ""  # a customer call: its consultation call while one runs
    consult_for: str = ""  # a consultation: the customer call it is about
    internal: bool = False  # a consultation between agents (no CDR, no queue_log)
    ivr_path: tuple[str, ...] = ()
    callback_attempts: int = 0  # dials made to the customer
    callback_expires_at: float = 0.0
    timers: dict[str, float] = field(default_factory=dict)


Owner = Union[Agent, Call]


class EngineCore:
    """Data, timers and emitters shared by the mixins."""

    def __init__(self, config: EngineConfig, *, rng: random.Random | None = None,
                 epoch: float = 0.0) -> None:
        self.cfg = config
        self.rng = rng if rng is not None else random.Random(0)
        self.epoch = epoch
        self.now = float("-inf")
        self.stats: Counter[str] = Counter()
        self.estimator = WaitEstimator(config.aht_default_s)
        self.queues: dict[str, QueueState] = {
            name: QueueState(q, strategy_class(q.strategy)(self.rng))
            for name, q in config.queues.items()}
        self.agents: dict[str, Agent] = {
            aid: Agent(aid, a, i) for i, (aid, a) in enumerate(config.agents.items())}
        self.calls: dict[str, Call] = {}  # live calls
        # the last ENDED_MEMORY ended calls; an OrderedDict pops its oldest in O(1) (a dict would
        # step over every deleted slot at its front)
        self.ended: OrderedDict[str, Call] = OrderedDict()
        self._out: list[Action] = []
        self._heap: list[tuple[float, int, Owner, str]] = []
        self._n = itertools.count()
        self._seq = itertools.count(1)
        self._dirty_agents: dict[str, Agent] = {}
        self._dirty_calls: dict[str, Call] = {}
        self._empty_queues: dict[str, QueueState] = {}

    # -- outputs ----------------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _qlog(self, now: float, call_id: str, queue: str, agent: str, event: str,
              *data: object) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.internal:
            return  # consultations between agents stay out of the queue_log
        self._out.append(QueueLogEntry(self.epoch + now, call_id, queue, agent, event,
                                       tuple(str(d) for d in data)))

    # -- timers -----------------------------------------------------------------------

    def _set_timer(self, owner: Owner, kind: str, deadline: float) -> None:
        owner.timers[kind] = deadline
        heapq.heappush(self._heap, (deadline, next(self._n), owner, kind))

    @staticmethod
    def _cancel_timer(owner: Owner, kind: str) -> None:
        owner.timers.pop(kind, None)

    def _next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, owner, kind = heap[0]
            if owner.timers.get(kind) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def _fire_due(self, now: float) -> None:
        """Fire every timer due at ``now`` or before, each at its own deadline."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, owner, kind = heapq.heappop(heap)
            if owner.timers.get(kind) != deadline:
                continue
            del owner.timers[kind]
            self.now = max(self.now, deadline)
            if isinstance(owner, Agent):
                self._agent_input(owner, "t_" + kind, deadline)
            else:
                self._call_input(owner, "t_" + kind, deadline)
            self._dispatch(deadline)

    # -- hooks the mixins provide -----------------------------------------------------

    def _agent_input(self, agent: Agent, inp: str, now: float, arg: Any = None) -> None:
        raise NotImplementedError

    def _call_input(self, call: Call, inp: str, now: float, arg: Any = None) -> None:
        raise NotImplementedError

    def _dispatch(self, now: float) -> None:
        raise NotImplementedError

    def _end_offer(self, offer: Offer, outcome: str, now: float, *,
                   cancel_reason: str = "", requeue: bool = True) -> None:
        raise NotImplementedError

    def _requeue_lost_agent(self, call: Call, agent: Agent, now: float) -> None:
        raise NotImplementedError

    def _overflow(self, call: Call, now: float, reason: str) -> None:
        raise NotImplementedError

    # -- lookups ----------------------------------------------------------------------

    def _agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(f"no agent {agent_id!r} in the configuration")
        return agent

    def _queue(self, name: str) -> QueueState:
        q = self.queues.get(name)
        if q is None:
            raise UnknownQueue(f"no queue {name!r} in the configuration")
        return q

    def _find_call(self, call_id: str) -> Call | None:
        return self.calls.get(call_id) or self.ended.get(call_id)

    def _remember_ended(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        self.ended.pop(call.id, None)
        self.ended[call.id] = call
        if len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)
