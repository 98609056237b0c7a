"""Matching waiting calls with available agents.

The engine routes eagerly: after every event and every timer it settles, so that between
two inputs **no waiting call has an available agent able to take it** (an invariant the
tests check). Two consequences make routing cheap and fair:

- When a call becomes routable (it enters, is requeued, widens its skill level, or an
  agent's decline expires), the only agents that can serve it are the available ones: the
  queue's strategy picks among them (``QueueState.targets``).
- When an agent becomes available, no other available agent can serve any waiting call,
  so the agent simply takes the **best waiting call across all the queues it serves**:
  the smallest entry ``(-(priority + queue weight), -boost, enter_time, seq)``: highest
  priority (the queue's ``weight`` acts as a priority offset), then a requeued call, then
  the longest waiting (original enter time). Only the heads of the agent's queues' level
  tiers are looked at, never all calls or all agents. This is what keeps agents shared by
  several queues fair to every queue: no queue is drained first because of its name or
  its configuration order, and a caller's wait counts the same in every queue.

When several agents and calls become routable together (ring-all cancellations, a login
of many members, a timer) the candidate calls are routed in that same global order, each
to the agent its queue's strategy prefers; rounds repeat until nothing more can be offered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from acd.engine.actions import OfferCall, Ringback
from acd.engine.core import Agent, Call, EngineCore, EngineError, Offer
from acd.engine.queues import QueueState

__all__ = ["Router", "pick_agents"]

log = logging.getLogger(__name__)

WAITING = ("queued", "callback-pending")
MAX_ROUNDS = 100_000


def pick_agents(q: QueueState, call: Call, now: float) -> list[Agent]:
    """The agents to offer ``call`` to now: [] (none), [best], or all of them (ring-all).

    Candidates are the queue's routable members whose effective level is at least the
    call's ``min_level`` (for a call that needs extra ``skills``, each of those skill levels
    too), minus those who declined the call less than ``reject_delay_s`` ago. With ``prefer_higher_level`` the levels are tried from the highest down and the
    first level holding a candidate wins; otherwise every accepted level competes under
    the strategy. Indexed strategies take the head of each level's heap; the others sort
    the candidates with ``Strategy.order``.
    """
    declined, skills, need = call.declined, call.skills, call.min_level
    ok: Callable[[Agent], bool] | None = None
    if skills:
        ok = (lambda a: all(a.cfg.skills.get(s, 0) >= need for s in skills)
              and (not declined or declined.get(a.id, -1.0) <= now))
    elif declined:
        ok = (lambda a: declined.get(a.id, -1.0) <= now)
    levels = [lv for lv in q.levels_desc if lv >= call.min_level and q.pools[lv].members]
    if not levels:
        return []
    groups = [[lv] for lv in levels] if q.cfg.prefer_higher_level else [levels]
    strategy = q.strategy
    for group in groups:
        if strategy.indexed and not strategy.ring_all:
            found = [b for b in (q.pools[lv].best(ok) for lv in group) if b is not None]
            if found:
                return [min(found, key=lambda b: b[0])[1]]
            continue
        cands = [a for lv in group for a in q.pools[lv].members.values() if ok is None or ok(a)]
        if cands:
            ordered = strategy.order(q, call, cands, now)
            return ordered if strategy.ring_all else ordered[:1]
    return []


class Router(EngineCore):
    """The settle phase run after each input."""

    def _dispatch(self, now: float) -> None:
        if self._empty_queues:
            queues = list(self._empty_queues.values())
            self._empty_queues.clear()
            for q in queues:
                self._leave_empty(q, now)
        for _ in range(MAX_ROUNDS):
            if not self._dirty_agents and not self._dirty_calls:
                return
            agents = list(self._dirty_agents.values())
            calls = self._dirty_calls
            self._dirty_agents = {}
            self._dirty_calls = {}
            candidates: dict[str, tuple[Any, ...]] = {}
            for call in calls.values():
                if call.state in WAITING and call.entry is not None:
                    candidates[call.id] = call.entry
            for agent in agents:
                if agent.routable:
                    entry = self._best_call_for(agent, now)
                    if entry is not None:
                        candidates[entry[4].id] = entry
            offered = False
            for entry in sorted(candidates.values()):
                call = entry[4]
                if call.state in WAITING and self._route(call, now):
                    offered = True
            if not offered:
                return
            for agent in agents:  # their best call may have gone to another agent
                if agent.routable:
                    self._dirty_agents.setdefault(agent.id, agent)
        raise EngineError("routing did not settle")

    def _best_call_for(self, agent: Agent, now: float) -> tuple[Any, ...] | None:
        """The best waiting call across the agent's queues (cross-queue fairness)."""
        best = None
        for qname, level in agent.levels.items():
            entry = self.queues[qname].best_waiting_for(agent, level, now)
            if entry is not None and (best is None or entry < best):
                best = entry
        return best

    def _route(self, call: Call, now: float) -> bool:
        q = self.queues[call.queue]
        targets = pick_agents(q, call, now)
        if not targets:
            return False
        self._offer(call, q, targets, now)
        return True

    def _offer(self, call: Call, q: QueueState, agents: list[Agent], now: float) -> None:
        q.remove_waiting(call)
        call.state = "offered"
        number = call.callback_number if call.callback else ""
        for agent in agents:
            offer = Offer(agent, call, now, q.name)
            call.offers[agent.id] = offer
            self._emit(OfferCall(agent.id, call.id, q.name, q.cfg.ring_timeout_s, call.caller,
                                 number, call.ivr_path, call.skills))
            self._agent_input(agent, "offer", now, offer)
            q.strategy.offered(q, agent, call, now)
        if call.leg_up and q.cfg.ringback_when_offered and not call.ringing:
            call.ringing = True
            self._emit(Ringback(call.id))
        log.debug("call %s offered to %s", call.id, ", ".join(a.id for a in agents))

    def _leave_empty(self, q: QueueState, now: float) -> None:
        """leave_when_empty: nobody left who could serve; waiting callers get the overflow."""
        rule = q.cfg.leave_when_empty
        if not ((rule == "yes" and q.logged_in == 0) or (rule == "strict" and q.staffed == 0)):
            return
        for entry in list(q.present):
            call = entry[4]
            if call.state == "queued" and call.queue == q.name:
                self._overflow(call, now, "leave-empty")
