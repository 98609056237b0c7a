"""The call state machine: ``CALL_TABLE[(state, input)] -> handler``.

States: queued (caller waiting, music), callback-pending (waiting without a caller leg,
keeping its position), callback-retry (the customer was not reached: keeps its position,
not routable until ``retry_after_s``), offered (one or more agents ringing), connected,
ended; "ivr" is reserved for the IVR. Inputs: call events (caller_hangup, agent_hangup,
answer, reject, digit, callback_request, callback_failed) and timers (t_max_wait,
t_announce, t_periodic, t_widen, t_retry, t_callback_offer, t_callback_expire,
t_callback_retry, t_reconcile).

A call keeps its queue entry (priority, enter time, sequence) through rejects, ring
timeouts and requeues, so it always comes back to its original position. Max wait, an
expiring callback or a callback offer falling while an agent rings are deferred until the
offer is over: an answer beats a timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from acd.engine.actions import Announce, CallbackScheduled, CancelOffer, ConnectCall, \
    DropAgentLeg, ExitQueue, HangupCall, JoinRejected, MoveQueue, RejectLateAnswer, StartMusic
from acd.engine.core import IGNORE, Agent, Call, DuplicateCall, EngineCore, InvalidTransition, Offer
from acd.engine.events import AgentHangup, CallbackRequest, CallEnters, CallerDigit, \
    OfferAnswered, OfferRejected
from acd.engine.config import CallbackConfig
from acd.engine.queues import QueueState
from acd.engine.records import CallRecord, OfferRecord

__all__ = ["CallMachine", "CALL_TABLE"]

log = logging.getLogger(__name__)

WAITING = ("queued", "callback-pending")
QUEUE_TIMERS = ("max_wait", "announce", "periodic", "widen", "retry", "callback_offer",
                "callback_expire", "callback_retry")
DEFAULT_CALLBACK = CallbackConfig()  # overflow "callback" in a queue without a callback table

CALL_TABLE: dict[tuple[str, str], str] = {
    ("queued", "caller_hangup"): "_abandon",
    ("queued", "agent_hangup"): IGNORE,  # BYE of an agent leg already dropped
    ("queued", "answer"): "_late_answer",  # the offer timed out or was rejected
    ("queued", "reject"): IGNORE,  # the offer already timed out
    ("queued", "digit"): "_digit",
    ("queued", "callback_request"): "_callback_request",
    ("queued", "t_max_wait"): "_max_wait",
    ("queued", "t_announce"): "_announce",
    ("queued", "t_periodic"): "_periodic",
    ("queued", "t_widen"): "_widen",
    ("queued", "t_retry"): "_retry",
    ("queued", "t_callback_offer"): "_offer_callback",
    ("queued", "t_reconcile"): "_reconcile",

    ("callback-pending", "caller_hangup"): IGNORE,  # the caller leg was already released
    ("callback-pending", "agent_hangup"): IGNORE,
    ("callback-pending", "answer"): "_late_answer",
    ("callback-pending", "reject"): IGNORE,
    ("callback-pending", "digit"): IGNORE,
    ("callback-pending", "callback_request"): IGNORE,
    ("callback-pending", "t_widen"): "_widen",
    ("callback-pending", "t_retry"): "_retry",
    ("callback-pending", "t_callback_expire"): "_callback_expire",
    ("callback-pending", "callback_failed"): IGNORE,  # a duplicate report

    ("callback-retry", "caller_hangup"): IGNORE,
    ("callback-retry", "agent_hangup"): IGNORE,  # the agent leg of the failed attempt
    ("callback-retry", "answer"): "_late_answer",
    ("callback-retry", "reject"): IGNORE,
    ("callback-retry", "digit"): IGNORE,
    ("callback-retry", "callback_request"): IGNORE,
    ("callback-retry", "callback_failed"): IGNORE,  # a duplicate report
    ("callback-retry", "t_callback_retry"): "_callback_retry",
    ("callback-retry", "t_callback_expire"): "_callback_expire",

    ("offered", "caller_hangup"): "_abandon",
    ("offered", "agent_hangup"): IGNORE,
    ("offered", "answer"): "_answer",
    ("offered", "reject"): "_reject",
    ("offered", "digit"): "_digit",
    ("offered", "callback_request"): IGNORE,  # an agent is ringing already
    ("offered", "t_max_wait"): "_defer_timeout",
    ("offered", "t_announce"): "_announce",  # re-armed, not played while ringing
    ("offered", "t_periodic"): "_periodic",
    ("offered", "t_widen"): "_widen",
    ("offered", "t_retry"): "_retry",
    ("offered", "t_callback_offer"): "_offer_callback",
    ("offered", "t_callback_expire"): "_defer_expire",
    ("offered", "t_reconcile"): "_reconcile",

    ("connected", "caller_hangup"): "_complete_caller",
    ("connected", "agent_hangup"): "_complete_agent",
    ("connected", "answer"): "_answer_connected",
    ("connected", "reject"): IGNORE,
    ("connected", "digit"): IGNORE,
    ("connected", "callback_request"): IGNORE,
    ("connected", "callback_failed"): "_callback_failed",
    ("connected", "transfer"): "_transfer",
    ("connected", "consult"): "_consult",
    ("connected", "consult_complete"): "_consult_complete",
    ("connected", "consult_cancel"): "_consult_cancel",
    ("connected", "t_reconcile"): "_reconcile",

    ("ended", "caller_hangup"): IGNORE,
    ("ended", "agent_hangup"): IGNORE,
    ("ended", "answer"): "_late_answer",
    ("ended", "reject"): IGNORE,
    ("ended", "digit"): IGNORE,
    ("ended", "callback_request"): IGNORE,
    ("ended", "callback_failed"): IGNORE,
}


class CallMachine(EngineCore):
    """Call table handlers; each takes (call, now, arg)."""

    def _call_input(self, call: Call, inp: str, now: float, arg: Any = None) -> None:
        handler = CALL_TABLE.get((call.state, inp))
        if handler is None:
            raise InvalidTransition("call", call.id, call.state, inp)
        if handler == IGNORE:
            self.stats[f"call:{call.state}:{inp}"] += 1
            log.debug("call %s: %s ignored in state %s", call.id, inp, call.state)
            return
        getattr(self, handler)(call, now, arg)

    # -- entering and leaving queues ---------------------------------------------------

    def _enter(self, ev: CallEnters, now: float) -> None:
        q = self._queue(ev.queue)
        if ev.call in self.calls:
            raise DuplicateCall(f"call {ev.call!r} is already in queue {self.calls[ev.call].queue}")
        prio = q.cfg.priority if ev.priority is None else ev.priority
        call = Call(ev.call, next(self._seq), ev.caller, ev.url, prio, ev.test, now, now,
                    q.name, q.name, last_seen=now, skills=tuple(sorted(set(ev.skills))),
                    ivr_path=tuple(ev.ivr_path))
        cfg = q.cfg
        reason = ""
        if cfg.max_len and len(q.present) >= cfg.max_len:
            reason = "full"
        elif (cfg.join_empty == "no" and q.logged_in == 0) or \
                (cfg.join_empty == "strict" and q.staffed == 0):
            reason = "join-empty"
        if reason:
            self._qlog(now, call.id, q.name, "NONE", "FULL" if reason == "full" else "JOINEMPTY")
            self._emit(JoinRejected(call.id, q.name, reason))
            call.state = "ended"
            self._record(call, now, "rejected", reason)
            self._remember_ended(call)
            return
        self.ended.pop(call.id, None)
        self.calls[call.id] = call
        self._join_queue(call, q, now, keep_enter_time=True)
        if self.cfg.reconcile_after_s > 0:
            self._set_timer(call, "reconcile", now + self.cfg.reconcile_after_s)

    def _join_queue(self, call: Call, q: QueueState, now: float, *, keep_enter_time: bool) -> None:
        cfg = q.cfg
        call.queue = q.name
        call.queue_entered_at = now
        if not keep_enter_time:
            call.enter_time = now
        call.min_level = cfg.min_level
        call.widen_step = 0
        call.callback_offered = False
        call.last_position = 0
        call.entry = q.entry_for(call)
        call.state = "queued" if call.leg_up else "callback-pending"
        q.add_present(call)
        q.add_waiting(call)
        pos = q.position(call)
        call.origposition = pos
        self._qlog(now, call.id, q.name, "NONE", "ENTERQUEUE", call.url, call.caller, pos)
        est = self.estimator.estimate(q.name, pos, q.staffed, q.available)
        first = call.estimate is None
        if first:
            call.estimate = est
        if call.leg_up:
            self._emit(StartMusic(call.id, cfg.music))
            call.ringing = False
            every = cfg.announce_position_every_s
            if every > 0:
                if est.k > 0:  # nobody idle: tell the caller where they stand
                    ewt = est.ewt_s if cfg.announce_holdtime else None
                    self._emit(Announce(call.id, q.name, "position", pos, ewt))
                    call.last_position = pos
                    if first and ewt is not None:
                        call.ewt_announced = True
                self._set_timer(call, "announce", now + every)
            if cfg.periodic_announce_every_s > 0:
                self._set_timer(call, "periodic", now + cfg.periodic_announce_every_s)
            if cfg.max_wait_s > 0:
                self._set_timer(call, "max_wait", now + cfg.max_wait_s)
            if cfg.callback and cfg.callback.offer_after_s > 0:
                self._set_timer(call, "callback_offer", now + cfg.callback.offer_after_s)
        else:
            call.callback_expires_at = now + (cfg.callback or DEFAULT_CALLBACK).expire_s
            self._set_timer(call, "callback_expire", call.callback_expires_at)
        if cfg.skill_widening:
            self._set_timer(call, "widen", now + cfg.skill_widening[0].after_s)
        if call.declined:
            self._set_timer(call, "retry", min(call.declined.values()))
        self._dirty_calls[call.id] = call

    def _leave_queue(self, call: Call) -> None:
        q = self.queues[call.queue]
        if call.state in WAITING:
            q.remove_waiting(call)
        if call.state in WAITING or call.state in ("offered", "callback-retry"):
            q.remove_present(call)
        for kind in QUEUE_TIMERS:
            self._cancel_timer(call, kind)
        call.timeout_pending = call.expire_pending = False

    def _end_call(self, call: Call, now: float, outcome: str, reason: str) -> None:
        if call.state != "connected":
            self._leave_queue(call)
        if call.consult or call.consult_for:
            self._consult_call_ends(call, now, reason)
        call.state = "ended"
        call.timers.clear()
        call.agent = None
        self._record(call, now, outcome, reason)
        self._remember_ended(call)

    def _record(self, call: Call, now: float, outcome: str, reason: str) -> None:
        if call.internal:
            return  # a consultation between agents is not a customer call
        agent = self.agents.get(call.agent_id)
        est = call.estimate
        self._emit(CallRecord(
            call.id, call.caller, call.queue, call.first_queue, self.epoch + call.entered_at,
            None if call.answered_at is None else self.epoch + call.answered_at,
            self.epoch + now, call.agent_id,
            (now if call.answered_at is None else call.answered_at) - call.entered_at,
            call.talk_s, outcome, reason, None if est is None else est.ewt_s,
            call.ewt_announced, call.origposition, call.priority,
            tuple(call.overflowed_from), call.callback,
            call.test or (agent is not None and agent.cfg.test), tuple(call.transfers), call.ivr_path, call.skills,
            call.callback_number, call.callback_attempts))

    def _wait(self, call: Call, now: float) -> int:
        return int(now - call.enter_time)

    # -- offers ------------------------------------------------------------------------

    def _end_offer(self, offer: Offer, outcome: str, now: float, *,
                   cancel_reason: str = "", requeue: bool = True) -> None:
        call, agent = offer.call, offer.agent
        del call.offers[agent.id]
        ring = now - offer.at
        if not call.internal:
            self._emit(OfferRecord(agent.id, call.id, offer.queue, self.epoch + offer.at,
                                   self.epoch + now, outcome, ring, agent.cfg.test or call.test))
        if outcome == "cancelled":
            self._qlog(now, call.id, offer.queue, agent.id, "RINGCANCELED", int(ring * 1000))
        else:
            self._qlog(now, call.id, offer.queue, agent.id, "RINGNOANSWER", int(ring * 1000))
            if self.cfg.reject_delay_s > 0:
                call.declined[agent.id] = now + self.cfg.reject_delay_s
                if "retry" not in call.timers:
                    self._set_timer(call, "retry", now + self.cfg.reject_delay_s)
        if cancel_reason:
            self._emit(CancelOffer(agent.id, call.id, cancel_reason))
        self._agent_input(agent, "offer_" + outcome.replace("-", "_"), now, outcome)
        if requeue and not call.offers and call.state == "offered":
            self._requeue(call, now)

    def _cancel_offers(self, call: Call, now: float, reason: str) -> None:
        for offer in list(call.offers.values()):
            self._end_offer(offer, "cancelled", now, cancel_reason=reason, requeue=False)

    def _requeue(self, call: Call, now: float) -> None:
        """Every offer failed: back to the queue at the call's own position."""
        q = self.queues[call.queue]
        call.state = "queued" if call.leg_up else "callback-pending"
        q.add_waiting(call)
        if call.ringing:
            call.ringing = False
            self._emit(StartMusic(call.id, q.cfg.music))
        if call.timeout_pending:
            call.timeout_pending = False
            self._overflow(call, now, "timeout")
        elif call.expire_pending:
            call.expire_pending = False
            self._callback_expire(call, now, None)
        else:
            self._dirty_calls[call.id] = call

    def _answer(self, call: Call, now: float, ev: OfferAnswered) -> None:
        offer = call.offers.get(ev.agent)
        if offer is None:
            self._late_answer(call, now, ev)
            return
        agent = offer.agent
        q = self.queues[call.queue]
        del call.offers[agent.id]
        self._leave_queue(call)
        call.state = "connected"
        call.agent = agent
        call.agent_id = agent.id
        call.connected_at = now
        if call.answered_at is None:
            call.answered_at = now
        call.leg = ev.leg
        self._cancel_offers(call, now, "answered-elsewhere")
        ring = now - offer.at
        if not call.internal:
            self._emit(OfferRecord(agent.id, call.id, q.name, self.epoch + offer.at,
                                   self.epoch + now, "answered", ring, agent.cfg.test or call.test))
        self._qlog(now, call.id, q.name, agent.id, "CONNECT", self._wait(call, now), ev.leg,
                   int(ring))
        self._emit(ConnectCall(call.id, agent.id, ev.leg,
                               call.callback_number if call.callback else ""))
        self._agent_input(agent, "answer", now, offer)
        if not call.leg_up:  # a callback: the server dials the customer now
            call.leg_up = True
            call.callback_attempts += 1
            call.last_seen = now
            if self.cfg.reconcile_after_s > 0:
                self._set_timer(call, "reconcile", now + self.cfg.reconcile_after_s)
        elif (call.estimate is not None and not call.overflowed_from and not call.requeued
              and not call.callback):
            self.estimator.observe_wait(q.name, call.estimate, now - call.entered_at)

    def _late_answer(self, call: Call, now: float, ev: OfferAnswered) -> None:
        reason = "call-ended" if call.state == "ended" else "no-offer"
        self.stats["late-answer"] += 1
        log.info("call %s: late answer from agent %s (%s)", call.id, ev.agent, reason)
        self._emit(RejectLateAnswer(ev.agent, call.id, reason))

    def _answer_connected(self, call: Call, now: float, ev: OfferAnswered) -> None:
        if call.agent is not None and call.agent.id == ev.agent:
            self.stats["call:connected:dup-answer"] += 1
            return
        self.stats["late-answer"] += 1
        self._emit(RejectLateAnswer(ev.agent, call.id, "answered-elsewhere"))

    def _reject(self, call: Call, now: float, ev: OfferRejected) -> None:
        offer = call.offers.get(ev.agent)
        if offer is None:
            self.stats["call:offered:late-reject"] += 1
            return
        self._end_offer(offer, "rejected", now)

    # -- the end of a call -------------------------------------------------------------

    def _abandon(self, call: Call, now: float, arg: Any) -> None:
        pos = self.queues[call.queue].position(call)
        self._cancel_offers(call, now, "caller-gone")
        self._qlog(now, call.id, call.queue, "NONE", "ABANDON", pos, call.origposition,
                   self._wait(call, now))
        self._end_call(call, now, "abandoned", "caller-hangup")

    def _complete_caller(self, call: Call, now: float, arg: Any) -> None:
        self._complete(call, now, "COMPLETECALLER", "answered", "caller-hangup")

    def _complete_agent(self, call: Call, now: float, ev: AgentHangup) -> None:
        if call.agent is None or call.agent.id != ev.agent:
            self.stats["call:connected:stale-agent-hangup"] += 1
            return
        self._complete(call, now, "COMPLETEAGENT", "answered", "agent-hangup")

    def _callback_failed(self, call: Call, now: float, arg: Any) -> None:
        """The customer was not reached: the agent is freed; the callback is dialled again
        after ``retry_after_s`` from its own place, up to ``attempts`` dials."""
        if not call.callback:
            raise InvalidTransition("call", call.id, "connected (not a callback)", "callback_failed")
        agent = call.agent
        assert agent is not None
        q = self.queues[call.queue]
        cb = q.cfg.callback or DEFAULT_CALLBACK
        self._qlog(now, call.id, q.name, agent.id, "CALLBACKFAILED", call.callback_attempts,
                   cb.attempts, call.callback_number)
        if call.callback_attempts >= cb.attempts or now + cb.retry_after_s >= call.callback_expires_at:
            self._complete(call, now, "COMPLETEAGENT", "callback-failed", "customer-unreached")
            return
        talk = now - call.connected_at
        call.talk_s += talk
        self._qlog(now, call.id, q.name, agent.id, "COMPLETEAGENT",
                   int(call.connected_at - call.enter_time), int(talk), call.origposition)
        call.agent = None
        call.leg = ""
        call.leg_up = False
        call.state = "callback-retry"
        self._cancel_timer(call, "reconcile")
        q.add_present(call)  # its place is held; not routable until the retry
        self._set_timer(call, "callback_retry", now + cb.retry_after_s)
        self._set_timer(call, "callback_expire", call.callback_expires_at)
        self._agent_input(agent, "call_end", now, call)

    def _callback_retry(self, call: Call, now: float, arg: Any) -> None:
        q = self.queues[call.queue]
        call.state = "callback-pending"
        q.add_waiting(call)
        steps = q.cfg.skill_widening
        if call.widen_step < len(steps):
            self._set_timer(call, "widen", max(now, call.queue_entered_at + steps[call.widen_step].after_s))
        self._dirty_calls[call.id] = call

    def _complete(self, call: Call, now: float, event: str, outcome: str, reason: str) -> None:
        agent = call.agent
        assert agent is not None
        talk = now - call.connected_at
        call.talk_s += talk
        self._qlog(now, call.id, call.queue, agent.id, event,
                   int(call.connected_at - call.enter_time), int(talk), call.origposition)
        self._end_call(call, now, outcome, reason)
        self._agent_input(agent, "call_end", now, call)

    def _requeue_lost_agent(self, call: Call, agent: Agent, now: float) -> None:
        """The agent's connection did not come back: the caller returns to the queue head."""
        talk = now - call.connected_at
        call.talk_s += talk
        self._qlog(now, call.id, call.queue, agent.id, "COMPLETEAGENT",
                   int(call.connected_at - call.enter_time), int(talk), call.origposition)
        self._emit(DropAgentLeg(agent.id, call.id, "connection-lost"))
        call.agent = None
        call.leg = ""
        call.boost = 1
        call.requeued = True
        self._join_queue(call, self.queues[call.queue], now, keep_enter_time=True)

    # -- waiting: keys, timers ----------------------------------------------------------

    def _digit(self, call: Call, now: float, ev: CallerDigit) -> None:
        q = self.queues[call.queue]
        cfg = q.cfg
        if cfg.exit_key and ev.digit == cfg.exit_key:
            pos = q.position(call)
            self._cancel_offers(call, now, "caller-gone")
            self._qlog(now, call.id, q.name, "NONE", "EXITWITHKEY", ev.digit, pos,
                       call.origposition, self._wait(call, now))
            self._emit(ExitQueue(call.id, q.name, "exit-key", "continue", cfg.exit_target,
                                 "", ev.digit))
            self._end_call(call, now, "exit-key", "exit-key")
        elif (cfg.callback and ev.digit == cfg.callback.key and call.callback_offered
              and call.state == "queued"):
            self._to_callback(call, now, call.caller, cfg.callback.confirm_prompt)
        else:
            self.stats[f"call:{call.state}:digit-ignored"] += 1

    def _callback_request(self, call: Call, now: float, ev: CallbackRequest) -> None:
        cb = self.queues[call.queue].cfg.callback
        self._to_callback(call, now, ev.number or call.caller, cb.confirm_prompt if cb else "")

    def _to_callback(self, call: Call, now: float, number: str, prompt: str) -> None:
        q = self.queues[call.queue]
        self._qlog(now, call.id, q.name, "NONE", "CALLBACK", q.position(call),
                   call.origposition, self._wait(call, now), number)
        call.callback = True
        call.callback_number = number
        call.leg_up = False
        call.ringing = False
        call.state = "callback-pending"  # same tier, same position
        for kind in ("max_wait", "announce", "periodic", "callback_offer", "reconcile"):
            self._cancel_timer(call, kind)
        call.timeout_pending = False
        call.callback_expires_at = now + (q.cfg.callback or DEFAULT_CALLBACK).expire_s
        self._set_timer(call, "callback_expire", call.callback_expires_at)
        self._emit(CallbackScheduled(call.id, q.name, number, prompt))

    def _max_wait(self, call: Call, now: float, arg: Any) -> None:
        self._overflow(call, now, "timeout")

    def _defer_timeout(self, call: Call, now: float, arg: Any) -> None:
        call.timeout_pending = True

    def _defer_expire(self, call: Call, now: float, arg: Any) -> None:
        call.expire_pending = True

    def _overflow(self, call: Call, now: float, reason: str) -> None:
        """Max wait ("timeout") or leave-when-empty ("leave-empty"): the overflow rule."""
        q = self.queues[call.queue]
        ov = q.cfg.overflow
        if ov.action == "callback":
            self._to_callback(call, now, call.caller, ov.prompt)
            return
        event = "EXITWITHTIMEOUT" if reason == "timeout" else "EXITEMPTY"
        self._qlog(now, call.id, q.name, "NONE", event, q.position(call), call.origposition,
                   self._wait(call, now))
        if ov.action == "queue":
            self._leave_queue(call)
            call.overflowed_from.append(q.name)
            self._emit(MoveQueue(call.id, q.name, ov.target, reason, ov.prompt))
            self._join_queue(call, self.queues[ov.target], now,
                             keep_enter_time=ov.keep_enter_time)
            return
        if ov.action == "voicemail":
            self._emit(ExitQueue(call.id, q.name, reason, "voicemail", ov.target, ov.prompt))
            outcome = "overflow" if reason == "timeout" else "leave-empty"
        else:
            self._emit(ExitQueue(call.id, q.name, reason, "hangup", "", ov.prompt))
            outcome = "timeout" if reason == "timeout" else "leave-empty"
        self._end_call(call, now, outcome, reason)

    def _announce(self, call: Call, now: float, arg: Any) -> None:
        q = self.queues[call.queue]
        self._set_timer(call, "announce", now + q.cfg.announce_position_every_s)
        if call.state != "queued":
            return
        pos = q.position(call)
        if pos == call.last_position:
            return
        call.last_position = pos
        ewt = None
        if q.cfg.announce_holdtime:
            ewt = self.estimator.estimate(q.name, pos, q.staffed, q.available).ewt_s
        self._emit(Announce(call.id, q.name, "position", pos, ewt))

    def _periodic(self, call: Call, now: float, arg: Any) -> None:
        q = self.queues[call.queue]
        self._set_timer(call, "periodic", now + q.cfg.periodic_announce_every_s)
        if call.state == "queued":
            self._emit(Announce(call.id, q.name, "periodic", prompt=q.cfg.periodic_prompt))

    def _offer_callback(self, call: Call, now: float, arg: Any) -> None:
        q = self.queues[call.queue]
        cb = q.cfg.callback
        assert cb is not None
        if call.state != "queued":  # ringing: offer it if the ring fails
            self._set_timer(call, "callback_offer", now + q.cfg.ring_timeout_s)
            return
        call.callback_offered = True
        self._emit(Announce(call.id, q.name, "callback-offer", prompt=cb.prompt, key=cb.key))

    def _widen(self, call: Call, now: float, arg: Any) -> None:
        q = self.queues[call.queue]
        steps = q.cfg.skill_widening
        level = steps[call.widen_step].min_level
        if call.state in WAITING:
            q.remove_waiting(call)
            call.min_level = level
            q.add_waiting(call)
            self._dirty_calls[call.id] = call
        else:
            call.min_level = level
        call.widen_step += 1
        if call.widen_step < len(steps):
            self._set_timer(call, "widen", call.queue_entered_at + steps[call.widen_step].after_s)

    def _retry(self, call: Call, now: float, arg: Any) -> None:
        call.declined = {a: t for a, t in call.declined.items() if t > now}
        if call.declined:
            self._set_timer(call, "retry", min(call.declined.values()))
        if call.state in WAITING:
            self._dirty_calls[call.id] = call

    def _callback_expire(self, call: Call, now: float, arg: Any) -> None:
        q = self.queues[call.queue]
        self._qlog(now, call.id, q.name, "NONE", "EXITWITHTIMEOUT", q.position(call),
                   call.origposition, self._wait(call, now))
        self._emit(HangupCall(call.id, "callback-expired"))
        self._end_call(call, now, "callback-expired", "expired")

    # -- reconciliation ----------------------------------------------------------------

    def _reconcile(self, call: Call, now: float, arg: Any) -> None:
        due = call.last_seen + self.cfg.reconcile_after_s
        if due > now:
            self._set_timer(call, "reconcile", due)
            return
        self.stats["reconciled"] += 1
        log.warning("call %s (%s in %s) not confirmed by the server since %.1f: ending it",
                    call.id, call.state, call.queue, call.last_seen)
        if call.state == "connected":
            agent = call.agent
            assert agent is not None
            self._emit(HangupCall(call.id, "reconciled", agent.id))
            self._complete(call, now, "COMPLETECALLER", "reconciled", "reconciled")
            return
        pos = self.queues[call.queue].position(call)
        self._cancel_offers(call, now, "caller-gone")
        self._qlog(now, call.id, call.queue, "NONE", "ABANDON", pos, call.origposition,
                   self._wait(call, now))
        self._emit(HangupCall(call.id, "reconciled"))
        self._end_call(call, now, "reconciled", "reconciled")
