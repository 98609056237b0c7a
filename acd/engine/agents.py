"""The agent state machine: ``AGENT_TABLE[(state, input)] -> handler``.

States: logged-out, available, reserved (offered a call), on-call, wrap-up, break(reason).
Inputs are agent events (login, logout, break, ready, wrapup_done, flag_difficult,
conn_lost, conn_restored), engine inputs (offer, answer, offer_rejected, offer_no_answer,
offer_cancelled, call_end, lost_call) and timers (t_ring, t_wrapup, t_break, t_grace).

Deferred work: a logout or break asked for while reserved, on a call or in wrap-up waits
for the call and its wrap-up; a call flagged difficult adds a "recovery" break after the
wrap-up. When the work ends the agent goes, in this order of precedence, to logged-out,
the pending break, the recovery break, or available. Wrap-up ends only by its timer or by
``WrapUpDone``; nothing else shortens it (a logout or break asked for during wrap-up waits
for it too). ``AgentReady`` during a call cancels whatever is pending. A connection loss keeps the agent's state for ``connection_grace_s`` (not
routable meanwhile); then a call in progress is requeued at the head of its queue and the
agent goes to ``disconnect_to``.
"""

from __future__ import annotations

import logging
from typing import Any

from acd.engine.core import IGNORE, Agent, Call, EngineCore, InvalidTransition, Offer, \
    UnknownBreakReason, UnknownQueue
from acd.engine.events import AgentBreak, AgentLogin, AgentLogout
from acd.engine.records import AgentStateRecord

__all__ = ["AgentMachine", "AGENT_TABLE"]

log = logging.getLogger(__name__)

_WORKING = ("reserved", "on-call", "wrap-up")

AGENT_TABLE: dict[tuple[str, str], str] = {
    ("logged-out", "login"): "_login",
    ("logged-out", "logout"): IGNORE,
    ("logged-out", "conn_lost"): IGNORE,
    ("logged-out", "conn_restored"): IGNORE,
    ("logged-out", "wrapup_done"): IGNORE,  # raced the wrap-up timer, then a logout
    ("logged-out", "flag_difficult"): IGNORE,

    ("available", "login"): IGNORE,
    ("available", "logout"): "_logout",
    ("available", "break"): "_break",
    ("available", "ready"): IGNORE,
    ("available", "wrapup_done"): IGNORE,  # raced the wrap-up timer
    ("available", "flag_difficult"): "_recovery_now",  # flagged after wrap-up ended
    ("available", "conn_lost"): "_conn_lost",
    ("available", "conn_restored"): "_conn_restored",
    ("available", "offer"): "_reserve",
    ("available", "t_grace"): "_grace_idle",

    ("reserved", "login"): IGNORE,
    ("reserved", "logout"): "_pend_logout",
    ("reserved", "break"): "_pend_break",
    ("reserved", "ready"): "_clear_pending",
    ("reserved", "wrapup_done"): IGNORE,
    ("reserved", "flag_difficult"): "_flag",  # about the previous call: recovery after this one
    ("reserved", "conn_lost"): "_conn_lost_reserved",
    ("reserved", "conn_restored"): IGNORE,  # a reserved agent is connected
    ("reserved", "answer"): "_on_call",
    ("reserved", "offer_rejected"): "_offer_over",
    ("reserved", "offer_cancelled"): "_offer_over",
    ("reserved", "offer_no_answer"): "_offer_no_answer",
    ("reserved", "t_ring"): "_ring_timeout",

    ("on-call", "login"): IGNORE,
    ("on-call", "logout"): "_pend_logout",
    ("on-call", "break"): "_pend_break",
    ("on-call", "ready"): "_clear_pending",
    ("on-call", "wrapup_done"): IGNORE,  # from the previous call
    ("on-call", "flag_difficult"): "_flag",
    ("on-call", "conn_lost"): "_conn_lost",
    ("on-call", "conn_restored"): "_conn_restored",
    ("on-call", "call_end"): "_wrap_up",
    ("on-call", "t_grace"): "_grace_on_call",

    ("wrap-up", "login"): IGNORE,
    ("wrap-up", "logout"): "_pend_logout",
    ("wrap-up", "break"): "_pend_break",
    ("wrap-up", "ready"): "_clear_pending",
    ("wrap-up", "wrapup_done"): "_end_wrapup",
    ("wrap-up", "t_wrapup"): "_end_wrapup",
    ("wrap-up", "flag_difficult"): "_flag",
    ("wrap-up", "conn_lost"): "_conn_lost",
    ("wrap-up", "conn_restored"): "_conn_restored",
    ("wrap-up", "t_grace"): "_grace_idle",

    ("break", "login"): IGNORE,
    ("break", "logout"): "_logout",
    ("break", "break"): "_change_break",
    ("break", "ready"): "_ready",
    ("break", "t_break"): "_ready",
    ("break", "wrapup_done"): IGNORE,
    ("break", "flag_difficult"): IGNORE,  # already resting
    ("break", "conn_lost"): "_conn_lost",
    ("break", "conn_restored"): "_conn_restored",
    ("break", "t_grace"): "_grace_idle",
}


class AgentMachine(EngineCore):
    """Agent table handlers; each takes (agent, now, arg)."""

    def _agent_input(self, agent: Agent, inp: str, now: float, arg: Any = None) -> None:
        handler = AGENT_TABLE.get((agent.state, inp))
        if handler is None:
            raise InvalidTransition("agent", agent.id, agent.state, inp)
        if handler == IGNORE:
            self.stats[f"agent:{agent.state}:{inp}"] += 1
            log.debug("agent %s: %s ignored in state %s", agent.id, inp, agent.state)
            return
        getattr(self, handler)(agent, now, arg)

    # -- the one place a state changes ---------------------------------------------------

    def _set_state(self, agent: Agent, state: str, now: float, reason: str,
                   call_id: str = "") -> None:
        self._emit(AgentStateRecord(self.epoch + now, agent.id, agent.state, state, reason,
                                    now - agent.since, agent.pending(), call_id, agent.cfg.test))
        agent.state = state
        agent.since = now
        agent.reason = reason if state == "break" else ""
        if state == "available":
            agent.available_since = now
        self._sync(agent)
        if not agent.connected and state not in ("logged-out", "break") \
                and "grace" not in agent.timers:  # e.g. ready again after the grace ran out
            self._set_timer(agent, "grace", now + self.cfg.connection_grace_s)

    def _note(self, agent: Agent, now: float, reason: str) -> None:
        """A visible change without a state change (pending work, connection)."""
        self._emit(AgentStateRecord(self.epoch + now, agent.id, agent.state, agent.state,
                                    reason, now - agent.since, agent.pending(), "",
                                    agent.cfg.test))

    def _sync(self, agent: Agent) -> None:
        """Apply the agent's membership counters and routability to its queues."""
        logged = agent.state != "logged-out"
        staffed = logged and agent.state != "break"  # a connection in its grace still counts
        routable = agent.state == "available" and agent.connected
        was_logged, was_staffed, was_routable = agent.applied
        if (logged, staffed) != (was_logged, was_staffed):
            dl, ds = int(logged) - int(was_logged), int(staffed) - int(was_staffed)
            for qname, level in agent.levels.items():
                q = self.queues[qname]
                if level < q.floor_level:
                    continue
                q.logged_in += dl
                q.staffed += ds
                rule = q.cfg.leave_when_empty
                if (rule == "yes" and dl < 0 and q.logged_in == 0) or \
                        (rule == "strict" and ds < 0 and q.staffed == 0):
                    self._empty_queues[qname] = q
        if routable != was_routable:
            agent.token += 1
            for qname, level in agent.levels.items():
                if routable:
                    self.queues[qname].pool_add(agent, level)
                else:
                    self.queues[qname].pool_remove(agent, level)
            if routable:
                self._dirty_agents[agent.id] = agent
        agent.applied = (logged, staffed, routable)

    # -- login, logout, breaks -----------------------------------------------------------

    def _login(self, agent: Agent, now: float, ev: AgentLogin) -> None:
        wanted = agent.cfg.queues if ev.queues is None else ev.queues
        for qname in wanted:
            if qname not in agent.cfg.queues:
                raise UnknownQueue(f"agent {agent.id} is not a member of queue {qname!r}")
        agent.levels = {}
        for qname in wanted:
            level = agent.cfg.level_in(self.queues[qname].cfg)
            if level > 0:
                agent.levels[qname] = level
        agent.connected = True
        agent.no_answer_streak = 0
        for qname in agent.levels:
            self._qlog(now, "NONE", qname, agent.id, "ADDMEMBER")
        self._set_state(agent, "available", now, "login")

    def _logout(self, agent: Agent, now: float, ev: AgentLogout | None) -> None:
        self._do_logout(agent, now, (ev.reason if ev else "") or "logout")

    def _do_logout(self, agent: Agent, now: float, reason: str) -> None:
        for kind in ("break", "grace", "wrapup", "ring"):
            self._cancel_timer(agent, kind)
        agent.logout_pending = False
        agent.break_pending = ""
        agent.recovery_pending = False
        for qname in agent.levels:
            self._qlog(now, "NONE", qname, agent.id, "REMOVEMEMBER")
        self._set_state(agent, "logged-out", now, reason)
        agent.levels = {}
        agent.connected = True

    def _break_reason(self, reason: str) -> str:
        if reason not in self.cfg.breaks:
            raise UnknownBreakReason(f"no break reason {reason!r} in the configuration")
        return reason

    def _break(self, agent: Agent, now: float, ev: AgentBreak) -> None:
        self._start_break(agent, now, self._break_reason(ev.reason))

    def _start_break(self, agent: Agent, now: float, reason: str) -> None:
        agent.break_pending = ""
        agent.recovery_pending = False
        for qname in agent.levels:
            self._qlog(now, "NONE", qname, agent.id, "PAUSE", reason)
        self._set_state(agent, "break", now, reason)
        self._cancel_timer(agent, "break")
        auto = self.cfg.breaks[reason].auto_ready_s
        if auto > 0:
            self._set_timer(agent, "break", now + auto)

    def _change_break(self, agent: Agent, now: float, ev: AgentBreak) -> None:
        reason = self._break_reason(ev.reason)
        if reason == agent.reason:
            self.stats["agent:break:same-break"] += 1
            return
        self._start_break(agent, now, reason)

    def _ready(self, agent: Agent, now: float, arg: Any) -> None:
        self._cancel_timer(agent, "break")
        for qname in agent.levels:
            self._qlog(now, "NONE", qname, agent.id, "UNPAUSE", agent.reason)
        self._set_state(agent, "available", now, "ready" if arg is not None else "auto-ready")

    def _recovery_now(self, agent: Agent, now: float, arg: Any) -> None:
        self._start_break(agent, now, "recovery")

    # -- pending work ------------------------------------------------------------------

    def _pend_logout(self, agent: Agent, now: float, ev: AgentLogout) -> None:
        if agent.logout_pending:
            self.stats[f"agent:{agent.state}:dup-logout"] += 1
            return
        agent.logout_pending = True
        agent.logout_reason = ev.reason or "logout"
        self._note(agent, now, "logout-pending")

    def _pend_break(self, agent: Agent, now: float, ev: AgentBreak) -> None:
        agent.break_pending = self._break_reason(ev.reason)
        self._note(agent, now, "break-pending")

    def _flag(self, agent: Agent, now: float, arg: Any) -> None:
        if agent.recovery_pending:
            self.stats[f"agent:{agent.state}:dup-flag"] += 1
            return
        agent.recovery_pending = True
        self._note(agent, now, "difficult-call")

    def _clear_pending(self, agent: Agent, now: float, arg: Any) -> None:
        if not agent.pending():
            self.stats[f"agent:{agent.state}:ready"] += 1
            return
        agent.logout_pending = False
        agent.break_pending = ""
        agent.recovery_pending = False
        self._note(agent, now, "pending-cancelled")

    def _work_done(self, agent: Agent, now: float, reason: str) -> None:
        """The end of an offer or of a call's work: apply what is pending."""
        agent.call = None
        agent.work_queue = ""
        if agent.logout_pending:
            self._do_logout(agent, now, agent.logout_reason)
        elif agent.break_pending:
            self._start_break(agent, now, agent.break_pending)
        elif agent.recovery_pending:
            self._start_break(agent, now, "recovery")
        else:
            self._set_state(agent, "available", now, reason)

    # -- offers ------------------------------------------------------------------------

    def _reserve(self, agent: Agent, now: float, offer: Offer) -> None:
        agent.offer = offer
        self._set_state(agent, "reserved", now, "offer", offer.call.id)
        self._set_timer(agent, "ring", now + self.queues[offer.queue].cfg.ring_timeout_s)

    def _on_call(self, agent: Agent, now: float, offer: Offer) -> None:
        self._cancel_timer(agent, "ring")
        agent.offer = None
        agent.call = offer.call
        agent.work_queue = offer.queue
        agent.handle_start = now
        agent.no_answer_streak = 0
        agent.calls_answered += 1
        self._set_state(agent, "on-call", now, "answered", offer.call.id)

    def _offer_over(self, agent: Agent, now: float, outcome: str) -> None:
        self._cancel_timer(agent, "ring")
        agent.offer = None
        self._work_done(agent, now, outcome)

    def _offer_no_answer(self, agent: Agent, now: float, outcome: str) -> None:
        self._cancel_timer(agent, "ring")
        agent.offer = None
        agent.no_answer_streak += 1
        limit = self.cfg.no_answer_limit
        if limit and agent.no_answer_streak >= limit and not agent.logout_pending:
            agent.no_answer_streak = 0
            agent.break_pending = ""
            self._start_break(agent, now, "no-answer")
        else:
            self._work_done(agent, now, outcome)

    def _ring_timeout(self, agent: Agent, now: float, arg: Any) -> None:
        assert agent.offer is not None
        self._end_offer(agent.offer, "no-answer", now, cancel_reason="timeout")

    # -- calls -------------------------------------------------------------------------

    def _wrap_up(self, agent: Agent, now: float, call: Call) -> None:
        agent.talk_s += now - agent.handle_start
        q = self.queues[agent.work_queue]
        duration = agent.cfg.wrapup_override_s
        if duration is None:
            duration = q.cfg.wrapup_s
        caps = [self.cfg.max_wrapup_s]
        if agent.cfg.max_wrapup_s is not None:
            caps.append(agent.cfg.max_wrapup_s)
        duration = min([duration, *caps])
        if duration > 0:
            self._set_state(agent, "wrap-up", now, "call-ended", call.id)
            self._set_timer(agent, "wrapup", now + duration)
        else:
            self.estimator.observe_handle(agent.work_queue, now - agent.handle_start)
            self._work_done(agent, now, "call-ended")

    def _end_wrapup(self, agent: Agent, now: float, arg: Any) -> None:
        self._cancel_timer(agent, "wrapup")
        self.estimator.observe_handle(agent.work_queue, now - agent.handle_start)
        self._work_done(agent, now, "wrapup-done" if arg is not None else "wrapup-timeout")

    # -- connection --------------------------------------------------------------------

    def _conn_lost(self, agent: Agent, now: float, arg: Any) -> None:
        if not agent.connected:
            self.stats[f"agent:{agent.state}:dup-conn-lost"] += 1
            return
        agent.connected = False
        self._sync(agent)
        self._set_timer(agent, "grace", now + self.cfg.connection_grace_s)
        self._note(agent, now, "connection-lost")

    def _conn_lost_reserved(self, agent: Agent, now: float, arg: Any) -> None:
        offer = agent.offer
        assert offer is not None
        agent.connected = False
        self._set_timer(agent, "grace", now + self.cfg.connection_grace_s)
        self._end_offer(offer, "cancelled", now, cancel_reason="connection-lost")
        self._note(agent, now, "connection-lost")

    def _conn_restored(self, agent: Agent, now: float, arg: Any) -> None:
        if agent.connected:
            self.stats[f"agent:{agent.state}:dup-conn-restored"] += 1
            return
        agent.connected = True
        self._cancel_timer(agent, "grace")
        self._sync(agent)
        self._note(agent, now, "connection-restored")

    def _grace_idle(self, agent: Agent, now: float, arg: Any) -> None:
        if agent.state == "wrap-up":
            self._cancel_timer(agent, "wrapup")
            self.estimator.observe_handle(agent.work_queue, now - agent.handle_start)
            agent.call = None
            agent.work_queue = ""
        self._disconnect_to(agent, now)

    def _grace_on_call(self, agent: Agent, now: float, arg: Any) -> None:
        call = agent.call
        assert call is not None
        agent.talk_s += now - agent.handle_start
        agent.call = None
        agent.work_queue = ""
        self._requeue_lost_agent(call, agent, now)
        self._disconnect_to(agent, now)

    def _disconnect_to(self, agent: Agent, now: float) -> None:
        if self.cfg.disconnect_to == "break" and not agent.logout_pending:
            self._start_break(agent, now, "disconnected")
        else:
            self._do_logout(agent, now, "disconnected")
