"""Races and liveness: late answers, lost BYEs, lost agent connections."""

from __future__ import annotations

from acd.engine.actions import CancelOffer, DropAgentLeg, HangupCall, OfferCall, RejectLateAnswer
from acd.engine.events import (
    AgentConnectionLost,
    AgentConnectionRestored,
    AgentHangup,
    AgentLogin,
    CallEnters,
    CallerHangup,
    CallsAlive,
    OfferAnswered,
    OfferRejected,
)
from acd.engine.records import CallRecord, OfferRecord

from tests.engine.helpers import Sim, config

QUEUES = {"q": {"wrapup_s": 10, "ring_timeout_s": 20}}
AGENTS = {"a": {"queues": {"q": 1}}, "b": {"queues": {"q": 1}}}


def make(**acd: object) -> Sim:
    return Sim(config(QUEUES, AGENTS, {"reconcile_after_s": 60, "connection_grace_s": 30,
                                       "reject_delay_s": 5, **acd}))


def alive_until(s: Sim, calls: frozenset[str], until: float, every: float = 20.0) -> None:
    t = (s.now // every + 1) * every  # reports at multiples of ``every``
    while t <= until:
        s.send(CallsAlive(calls), at=t)
        t += every


# -- late answers ------------------------------------------------------------------------


def test_answer_after_ring_timeout_is_rejected_and_agent_not_stuck() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.advance(20)
    assert s.of(CancelOffer) == [CancelOffer("a", "c1", "timeout")]
    s.send(OfferAnswered("a", "c1", leg="late"), at=20.5)
    assert s.of(RejectLateAnswer) == [RejectLateAnswer("a", "c1", "no-offer")]
    assert s.state("a") == "available"
    assert s.call_state("c1") == "queued"
    s.send(OfferRejected("a", "c1"), at=21)  # a late reject too
    assert s.engine.stats["call:queued:reject"] == 1
    assert s.engine.stats["late-answer"] == 1


def test_answer_exactly_at_the_deadline_is_late() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(OfferAnswered("a", "c1"), at=20)  # handle() fires the due timeout first
    assert s.of(RejectLateAnswer)
    assert [o.outcome for o in s.of(OfferRecord)] == ["no-answer"]


def test_answer_for_a_call_that_ended_or_never_existed() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(CallerHangup("c1"), at=2)
    s.send(OfferAnswered("a", "c1"), at=3)
    s.send(OfferAnswered("a", "ghost"), at=4)
    assert s.of(RejectLateAnswer) == [RejectLateAnswer("a", "c1", "call-ended"),
                                      RejectLateAnswer("a", "ghost", "unknown-call")]
    s.send(CallerHangup("c1"), at=5)  # duplicate hangup
    assert s.engine.stats["call:ended:caller_hangup"] == 1
    assert len(s.of(CallRecord)) == 1


def test_duplicate_answer_is_a_no_op() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(OfferAnswered("a", "c1"), at=1)
    s.send(OfferAnswered("a", "c1"), at=1.1)
    assert not s.of(RejectLateAnswer)
    assert s.engine.stats["call:connected:dup-answer"] == 1


# -- reconciliation ----------------------------------------------------------------------


def test_lost_bye_is_reconciled_and_frees_the_agent() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(OfferAnswered("a", "c1"), at=2)
    alive_until(s, frozenset({"c1"}), 100)  # confirmed until 100, then the BYE is lost
    s.advance(159)
    assert s.state("a") == "on-call"
    s.advance(160)
    assert s.of(HangupCall) == [HangupCall("c1", "reconciled", "a")]
    assert s.state("a") == "wrap-up"
    rec = s.records()[0]
    assert (rec.outcome, rec.talk_s) == ("reconciled", 158.0)
    assert s.qlog("COMPLETECALLER") == ["1700000160|c1|q|a|COMPLETECALLER|2|158|1"]
    s.advance(170)
    assert s.state("a") == "available"


def test_confirmed_calls_are_never_reconciled() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(CallEnters("c2", "q"), at=0)
    s.send(OfferAnswered("a", "c1"), at=1)
    alive_until(s, frozenset({"c1", "c2", "other"}), 1000)
    assert s.call_state("c1") == "connected" and s.call_state("c2") == "queued"
    assert s.engine.stats["alive:unknown-call"] > 0


def test_ghost_waiting_caller_is_reconciled() -> None:
    s = make()
    s.send(CallEnters("c1", "q"), at=0)
    s.advance(60)
    assert s.of(HangupCall) == [HangupCall("c1", "reconciled")]
    assert s.qlog("ABANDON") == ["1700000060|c1|q|NONE|ABANDON|1|1|60"]
    assert s.records()[0].outcome == "reconciled"


# -- agent connection --------------------------------------------------------------------


def test_lost_agent_connection_requeues_the_call_at_the_head_after_grace() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q", caller="5551234"), at=0)
    s.send(OfferAnswered("a", "c1", leg="LA"), at=5)
    s.send(CallEnters("c2", "q"), at=6)
    s.send(CallEnters("c3", "q"), at=7)
    alive = frozenset({"c1", "c2", "c3"})
    alive_until(s, alive, 40)
    s.send(AgentConnectionLost("a"), at=50)
    alive_until(s, alive, 79)
    s.advance(79)
    assert s.call_state("c1") == "connected"
    s.advance(80)
    assert s.of(DropAgentLeg) == [DropAgentLeg("a", "c1", "connection-lost")]
    assert s.state("a") == "logged-out"
    v = s.engine.call_view("c1")
    assert (v.state, v.position, v.enter_time) == ("queued", 1, 0.0)
    assert s.qlog("COMPLETEAGENT", "ENTERQUEUE")[-2:] == [
        "1700000080|c1|q|a|COMPLETEAGENT|5|75|1",
        "1700000080|c1|q|NONE|ENTERQUEUE||5551234|1",
    ]
    alive_until(s, alive, 90)
    s.send(AgentLogin("b"), at=90)
    assert s.of(OfferCall)[-1].call == "c1"


def test_connection_restored_within_grace_changes_nothing() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(OfferAnswered("a", "c1"), at=1)
    s.send(AgentConnectionLost("a"), at=10)
    s.send(AgentConnectionRestored("a"), at=20)
    s.send(CallsAlive(frozenset({"c1"})), at=30)
    s.advance(60)
    assert s.state("a") == "on-call"
    assert not s.of(DropAgentLeg)


def test_idle_agent_losing_connection_is_not_offered_and_leaves_after_grace() -> None:
    s = make(disconnect_to="break")
    s.send(AgentLogin("a"))
    s.send(AgentConnectionLost("a"), at=10)
    s.send(CallEnters("c1", "q"), at=11)
    assert not s.of(OfferCall)
    s.advance(40)
    v = s.engine.agent_view("a")
    assert (v.state, v.reason) == ("break", "disconnected")


def test_connection_lost_while_ringing_moves_the_call_on() -> None:
    s = make()
    s.send(AgentLogin("a"), at=0)
    s.send(AgentLogin("b"), at=1)
    s.send(CallEnters("c1", "q"), at=2)
    assert s.of(OfferCall)[-1].agent == "a"
    s.send(AgentConnectionLost("a"), at=3)
    assert s.of(CancelOffer) == [CancelOffer("a", "c1", "connection-lost")]
    assert s.of(OfferCall)[-1].agent == "b"
    s.send(AgentConnectionRestored("a"), at=4)
    assert s.state("a") == "available"


def test_agent_hangup_from_a_dropped_leg_is_ignored() -> None:
    s = make()
    s.send(AgentLogin("a"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(OfferAnswered("a", "c1"), at=1)
    s.send(AgentConnectionLost("a"), at=2)
    s.advance(32)
    s.send(AgentHangup("a", "c1"), at=33)  # the BYE of the dropped leg
    assert s.call_state("c1") == "queued"
    assert s.engine.stats["call:queued:agent_hangup"] == 1
