"""The ACD engine: one sans-IO model driven by the server and by the simulator alike.

::

    engine = Engine(config, rng=random.Random(seed), epoch=time.time() - loop.time())
    engine.handle(CallEnters("c1", "support", caller="5551234"), now)
    for action in engine.actions():        # OfferCall, StartMusic, QueueLogEntry, ...
        ...
    deadline = engine.get_timer()          # arm one timer; at deadline:
    engine.handle_timer(now)

``now`` is the driver's monotonic clock in seconds (``loop.time()`` in the server, virtual
time in tests and in the simulator); it must never go backwards. Records carry
``epoch + now``. ``handle`` first fires every timer due at ``now`` (each at its own
deadline), so an answer arriving at or after a ring timeout is late whatever the driver's
timer jitter. Nothing here sleeps, reads a clock or does I/O.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from acd.engine.actions import Action, RejectLateAnswer
from acd.engine.agents import AgentMachine
from acd.engine.calls import CallMachine
from acd.engine.config import EngineConfig
from acd.engine.core import ClockError, EngineError
from acd.engine.events import AGENT_INPUTS, CALL_INPUTS, CallEnters, CallsAlive, Event, \
    OfferAnswered
from acd.engine.invariants import check_invariants
from acd.engine.routing import Router
from acd.engine.transfers import TransferMachine

__all__ = ["Engine", "AgentView", "QueueView", "CallView"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentView:
    id: str
    name: str
    state: str
    since: float
    reason: str
    pending: str
    call: str
    connected: bool
    queues: tuple[tuple[str, int], ...]
    no_answer_streak: int
    calls_answered: int
    talk_s: float
    test: bool
    wrapup_until: float | None = None  # engine time the wrap-up ends by itself
    ring_until: float | None = None  # engine time the ringing offer times out


@dataclass(frozen=True)
class CallView:
    id: str
    state: str
    queue: str
    position: int | None
    agent: str
    enter_time: float
    min_level: int
    priority: int
    callback: bool
    caller: str = ""
    callback_number: str = ""
    ivr_path: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    consult: str = ""  # the consultation running about this call
    consult_for: str = ""  # a consultation: the customer call it is about
    connected_at: float | None = None  # the current connection (engine time)
    answered_at: float | None = None  # the first answer


@dataclass(frozen=True)
class QueueView:
    name: str
    waiting: int  # queued and callback-pending
    present: int  # waiting and offered
    callbacks: int
    longest_wait_s: float
    logged_in: int
    staffed: int
    available: int
    aht_s: float
    ewt_next_s: float | None  # for a caller entering now


class Engine(AgentMachine, CallMachine, TransferMachine, Router):
    """Events in, actions out; see the module docstring."""

    def __init__(self, config: EngineConfig, *, rng: random.Random | None = None,
                 epoch: float = 0.0) -> None:
        super().__init__(config, rng=rng, epoch=epoch)

    # -- the sans-IO interface --------------------------------------------------------

    def handle(self, event: Event, now: float) -> None:
        """Apply one event at time ``now``."""
        now = float(now)
        self._advance(now)
        inp = AGENT_INPUTS.get(type(event))
        if inp is not None:
            self._agent_input(self._agent(event.agent), inp, now, event)  # type: ignore[attr-defined]
        elif isinstance(event, CallEnters):
            self._enter(event, now)
        elif isinstance(event, CallsAlive):
            self._alive(event, now)
        else:
            inp = CALL_INPUTS.get(type(event))
            if inp is None:
                raise EngineError(f"not an engine event: {event!r}")
            agent_id = getattr(event, "agent", None)
            if agent_id is not None:
                self._agent(agent_id)
            call_id: str = event.call  # type: ignore[attr-defined]
            call = self._find_call(call_id)
            if call is None:
                self._unknown_call(event, inp)
            else:
                self._call_input(call, inp, now, event)
        self._dispatch(now)

    def actions(self) -> list[Action]:
        """Drain the actions produced so far, in order."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """The next deadline at which ``handle_timer`` must be called, if any."""
        return self._next_deadline()

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` or before."""
        self._advance(float(now))

    def check_invariants(self) -> None:
        """Raise :class:`InvariantViolation` if the model is inconsistent (tests)."""
        check_invariants(self)

    # -- helpers ----------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if now < self.now:
            raise ClockError(f"time went backwards: {now} < {self.now}")
        self._fire_due(now)
        self.now = now

    def _alive(self, ev: CallsAlive, now: float) -> None:
        for call_id in ev.calls:
            call = self.calls.get(call_id)
            if call is not None:
                call.last_seen = now
            elif call_id in self.ended:
                self.stats["alive:ended-call"] += 1
            else:
                self.stats["alive:unknown-call"] += 1

    def _unknown_call(self, event: Event, inp: str) -> None:
        """An event for a call the engine never had or forgot long ago."""
        self.stats[f"unknown-call:{inp}"] += 1
        if isinstance(event, OfferAnswered):
            self._emit(RejectLateAnswer(event.agent, event.call, "unknown-call"))

    # -- read-only views (status pages, wallboards) ------------------------------------

    def agent_view(self, agent_id: str) -> AgentView:
        a = self._agent(agent_id)
        call = a.call or (a.offer.call if a.offer else None)
        return AgentView(a.id, a.cfg.name, a.state, a.since, a.reason, a.pending(),
                         call.id if call else "", a.connected, tuple(a.levels.items()),
                         a.no_answer_streak, a.calls_answered, a.talk_s, a.cfg.test,
                         a.timers.get("wrapup"), a.timers.get("ring"))

    def call_view(self, call_id: str) -> CallView | None:
        c = self._find_call(call_id)
        if c is None:
            return None
        pos = None
        if c.state in ("queued", "callback-pending", "callback-retry", "offered"):
            pos = self.queues[c.queue].position(c)
        agent = c.agent.id if c.agent else ",".join(c.offers)
        return CallView(c.id, c.state, c.queue, pos, agent, c.enter_time, c.min_level,
                        c.priority, c.callback, c.caller, c.callback_number, c.ivr_path, c.skills,
                        c.consult, c.consult_for, c.connected_at if c.state == "connected" else None,
                        c.answered_at)

    def queue_view(self, name: str, now: float) -> QueueView:
        q = self._queue(name)
        callbacks = sum(1 for e in q.present if e[4].state in ("callback-pending", "callback-retry"))
        oldest = min((e[4].enter_time for e in q.present), default=None)
        est = self.estimator.estimate(name, len(q.present) + 1, q.staffed, q.available)
        return QueueView(name, q.waiting(), len(q.present), callbacks,
                         0.0 if oldest is None else now - oldest, q.logged_in, q.staffed,
                         q.available, self.estimator.aht(name), est.ewt_s)
