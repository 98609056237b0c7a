"""Transfers by the connected agent: blind (``TransferCall``) and attended (``ConsultCall``,
``ConsultComplete``, ``ConsultCancel``), as handlers of the call table (acd.engine.calls).

A consultation is an *internal* call ``K`` about a customer call ``C``: it is queued in the
target queue, or offered at once to the target agent, like any call, but it writes no CDR
and no queue_log. While it runs, ``C`` stays connected to the consulting agent (the server
plays music to the caller). ``ConsultComplete`` hands ``C`` to the agent who answered ``K``
(their state stays on-call; the consulting agent wraps up); ``ConsultCancel``, the target
hanging up, or the caller hanging up end ``K`` (``ConsultEnded`` says why).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from acd.engine.actions import ConnectCall, ConsultEnded, ConsultStarted, DropAgentLeg, TransferOut
from acd.engine.core import Agent, Call, EngineCore, EngineError, UnknownAgent
from acd.engine.events import ConsultCall, TransferCall
from acd.engine.queues import QueueState

__all__ = ["TransferMachine"]

log = logging.getLogger(__name__)

_consults = itertools.count(1)


class TransferMachine(EngineCore):
    """Call-table handlers for transfers; each takes (call, now, arg)."""

    def _check_target(self, call: Call, ev: Any) -> tuple[Agent, QueueState, Agent | None]:
        """The connected agent, the target queue and the target agent (if any) of a transfer
        or consultation; :class:`EngineError` before anything changes when it cannot be."""
        agent = call.agent
        if agent is None or agent.id != ev.agent:
            raise EngineError(f"call {call.id} is not connected to agent {ev.agent}")
        if call.internal:
            raise EngineError(f"call {call.id} is a consultation: complete or cancel it instead")
        number = getattr(ev, "number", "")
        if sum(bool(x) for x in (ev.queue, ev.to_agent, number)) != 1:
            raise EngineError("a transfer names exactly one of queue, to_agent, number")
        q = self._queue(ev.queue) if ev.queue else self.queues[call.queue]
        target = self.agents.get(ev.to_agent) if ev.to_agent else None
        if ev.to_agent and target is None:
            raise UnknownAgent(f"unknown agent {ev.to_agent!r}")
        if target is not None and (target is agent or not target.routable):
            raise EngineError(f"agent {ev.to_agent} is not available")
        return agent, q, target

    def _hand_over(self, call: Call, agent: Agent, now: float, where: str, context: str) -> None:
        """The agent's part of ``call`` ends with a TRANSFER to ``where`` ("queue:x", ...)."""
        talk = now - call.connected_at
        call.talk_s += talk
        kind, _, target = where.partition(":")
        self._qlog(now, call.id, call.queue, agent.id, "TRANSFER", target, context,
                   int(call.connected_at - call.enter_time), int(talk), call.origposition)
        call.transfers.append(where)
        self._emit(DropAgentLeg(agent.id, call.id, "transferred"))

    def _transfer(self, call: Call, now: float, ev: TransferCall) -> None:
        """Blind transfer: the agent's part ends (TRANSFER, then wrap-up) and the call goes to
        the target; a queue or agent target keeps the caller's enter time."""
        agent, q, target = self._check_target(call, ev)
        where = f"queue:{q.name}" if ev.queue else f"agent:{ev.to_agent}" if ev.to_agent else f"number:{ev.number}"
        self._hand_over(call, agent, now, where, where.partition(":")[0])
        if ev.number:
            self._end_call(call, now, "transferred", "transfer-out")
            self._emit(TransferOut(call.id, ev.number, agent.id))
            self._agent_input(agent, "call_end", now, call)
            return
        call.agent = None
        call.leg = ""
        self._agent_input(agent, "call_end", now, call)
        self._join_queue(call, q, now, keep_enter_time=True)
        if target is not None:
            self._offer(call, q, [target], now)

    # -- attended transfer ---------------------------------------------------------------

    def _consult(self, call: Call, now: float, ev: ConsultCall) -> None:
        agent, q, target = self._check_target(call, ev)
        if call.consult:
            raise EngineError(f"call {call.id}: a consultation is already running")
        k = Call(f"{call.id}/consult-{next(_consults)}", next(self._seq), agent.id, "", call.priority, call.test,
                 now, now, q.name, q.name, last_seen=now, consult_for=call.id, internal=True)
        self.calls[k.id] = k
        call.consult = k.id
        self._emit(ConsultStarted(call.id, k.id, agent.id, q.name, ev.to_agent))
        self._join_queue(k, q, now, keep_enter_time=True)
        if self.cfg.reconcile_after_s > 0:
            self._set_timer(k, "reconcile", now + self.cfg.reconcile_after_s)
        if target is not None:
            self._offer(k, q, [target], now)

    def _consult_complete(self, call: Call, now: float, ev: Any) -> None:
        agent = call.agent
        k = self.calls.get(call.consult)
        if agent is None or agent.id != ev.agent:
            raise EngineError(f"call {call.id} is not connected to agent {ev.agent}")
        if k is None or k.state != "connected" or k.agent is None:
            raise EngineError(f"call {call.id}: the consulted party has not answered")
        target = k.agent
        self._hand_over(call, agent, now, f"agent:{target.id}", "attended")
        self._agent_input(agent, "call_end", now, call)
        call.consult = ""
        k.consult_for = ""  # over: no ConsultEnded from its end below
        self._end_call(k, now, "consult", "completed")
        call.agent, call.agent_id, call.connected_at, call.leg = target, target.id, now, k.leg
        target.call = call  # still on-call, now with the customer
        self._emit(ConnectCall(call.id, target.id, call.leg))
        self._emit(ConsultEnded(call.id, k.id, agent.id, target.id, "completed"))

    def _consult_cancel(self, call: Call, now: float, ev: Any) -> None:
        k = self.calls.get(call.consult)
        if call.agent is None or call.agent.id != ev.agent:
            raise EngineError(f"call {call.id} is not connected to agent {ev.agent}")
        if k is None:
            raise EngineError(f"call {call.id}: no consultation is running")
        self._end_consult(k, now, "cancelled")

    def _end_consult(self, k: Call, now: float, reason: str) -> None:
        """End consultation ``k`` whatever its state (its end notifies the customer call)."""
        if k.state == "connected":
            target = k.agent
            assert target is not None
            k.talk_s += now - k.connected_at
            self._end_call(k, now, "consult", reason)
            self._agent_input(target, "call_end", now, k)
        else:
            self._cancel_offers(k, now, "caller-gone")
            self._end_call(k, now, "consult", reason)

    def _consult_call_ends(self, call: Call, now: float, reason: str) -> None:
        """From ``_end_call``: a consultation or its customer call is ending."""
        if call.consult:  # the customer call: its consultation goes too
            k = self.calls.get(call.consult)
            call.consult = ""
            if k is not None:
                target = k.agent.id if k.agent is not None else ""
                self._end_consult(k, now, reason)  # how the customer call ended
                self._emit(ConsultEnded(call.id, k.id, call.agent.id if call.agent else "", target, reason))
            return
        c = self.calls.get(call.consult_for)
        call.consult_for = ""
        if c is not None and c.consult == call.id:
            c.consult = ""
            target = call.agent.id if call.agent is not None else ""
            self._emit(ConsultEnded(c.id, call.id, c.agent.id if c.agent else "", target, reason))
