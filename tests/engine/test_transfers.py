"""Blind transfers by the connected agent: to a queue, to an agent, out to a number."""

from __future__ import annotations

import pytest

from acd.engine.actions import ConnectCall, ConsultEnded, ConsultStarted, DropAgentLeg, OfferCall, \
    StartMusic, TransferOut
from acd.engine.core import EngineError, InvalidTransition, UnknownAgent, UnknownQueue
from acd.engine.events import AgentHangup, AgentLogin, CallEnters, CallerHangup, ConsultCall, \
    ConsultCancel, ConsultComplete, OfferAnswered, OfferRejected, TransferCall
from acd.engine.records import CallRecord

from tests.engine.helpers import Sim, config

QUEUES = {"support": {"wrapup_s": 5}, "sales": {"wrapup_s": 0, "ring_timeout_s": 10}}
AGENTS = {"alice": {"queues": {"support": 1}}, "bob": {"queues": {"sales": 1}},
          "carol": {"queues": {"support": 1}}}


def connected() -> Sim:
    s = Sim(config(QUEUES, AGENTS, {"reconcile_after_s": 0}))
    s.send(CallEnters("early", "sales"), at=0)  # waits in sales
    s.send(AgentLogin("alice"), at=5)
    s.send(CallEnters("c1", "support", caller="555"), at=10)
    s.send(OfferAnswered("alice", "c1"), at=11)
    return s


def test_to_a_queue_keeps_the_enter_time_and_wraps_the_agent_up() -> None:
    s = connected()
    s.send(TransferCall("alice", "c1", queue="sales"), at=40)
    assert s.state("alice") == "wrap-up" and s.call_state("c1") == "queued"
    assert s.of(DropAgentLeg) == [DropAgentLeg("alice", "c1", "transferred")]
    assert s.of(StartMusic, call="c1")[-1].call == "c1"
    assert s.qlog("TRANSFER") == ["1700000040|c1|support|alice|TRANSFER|sales|queue|1|29|1"]
    assert s.engine.call_view("c1").queue == "sales"
    assert [s.engine.call_view(c).position for c in ("early", "c1")] == [1, 2]  # entered at 10 > 0
    s.send(AgentLogin("bob"), at=50)
    s.send(OfferAnswered("bob", "early"), at=51)
    s.send(CallerHangup("early"), at=52)
    assert s.of(OfferCall)[-1].call == "c1" and s.of(OfferCall)[-1].agent == "bob"
    s.send(OfferAnswered("bob", "c1"), at=53)
    s.send(CallerHangup("c1"), at=60)
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.outcome, rec.agent, rec.first_queue, rec.queue, rec.transfers) == \
        ("answered", "bob", "support", "sales", ("queue:sales",))
    assert rec.talk_s == pytest.approx(29 + 7)


def test_to_an_available_agent_rings_them_and_falls_back_to_the_queue() -> None:
    s = connected()
    s.send(AgentLogin("carol"), at=20)
    s.send(TransferCall("alice", "c1", to_agent="carol"), at=30)
    offer = s.of(OfferCall)[-1]
    assert (offer.call, offer.agent) == ("c1", "carol") and s.state("carol") == "reserved"
    s.send(OfferRejected("carol", "c1"), at=31)
    assert s.call_state("c1") == "queued"  # back in support, at its place, for anyone


def test_out_to_a_number_ends_the_acd_call() -> None:
    s = connected()
    s.send(TransferCall("alice", "c1", number="+33123456789"), at=30)
    assert s.of(TransferOut) == [TransferOut("c1", "+33123456789", "alice")]
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.outcome, rec.transfers, rec.talk_s) == ("transferred", ("number:+33123456789",), 19)
    assert s.state("alice") == "wrap-up"


def test_refused_transfers_change_nothing() -> None:
    s = connected()
    with pytest.raises(UnknownQueue):
        s.send(TransferCall("alice", "c1", queue="nope"), at=20)
    with pytest.raises(UnknownAgent):
        s.send(TransferCall("alice", "c1", to_agent="nobody"), at=20)
    with pytest.raises(EngineError, match="not available"):
        s.send(TransferCall("alice", "c1", to_agent="carol"), at=20)  # logged out
    with pytest.raises(EngineError, match="not connected to agent"):
        s.send(TransferCall("carol", "c1", queue="sales"), at=20)
    with pytest.raises(EngineError, match="exactly one"):
        s.send(TransferCall("alice", "c1", queue="sales", number="1"), at=20)
    with pytest.raises(InvalidTransition):
        s.send(TransferCall("alice", "early", queue="support"), at=20)  # not connected
    assert s.state("alice") == "on-call" and s.call_state("c1") == "connected" and not s.qlog("TRANSFER")


# -- attended transfer ---------------------------------------------------------------------

def consulting() -> Sim:
    s = connected()
    s.send(AgentLogin("carol"), at=20)
    s.send(ConsultCall("alice", "c1", to_agent="carol"), at=30)
    return s


def test_consult_an_agent_then_complete() -> None:
    s = consulting()
    (started,) = s.of(ConsultStarted)
    k = started.consult
    assert (started.call, started.agent, started.target) == ("c1", "alice", "carol")
    offer = s.of(OfferCall)[-1]
    assert (offer.call, offer.agent) == (k, "carol") and s.state("carol") == "reserved"
    assert s.state("alice") == "on-call" and s.call_state("c1") == "connected"  # the caller holds
    s.send(OfferAnswered("carol", k, leg="LC"), at=35)
    assert s.of(ConnectCall)[-1] == ConnectCall(k, "carol", "LC")
    s.send(ConsultComplete("alice", "c1"), at=50)
    assert s.state("alice") == "wrap-up" and s.state("carol") == "on-call"
    assert s.of(ConnectCall)[-1] == ConnectCall("c1", "carol", "LC")
    assert s.of(ConsultEnded)[-1] == ConsultEnded("c1", k, "alice", "carol", "completed")
    assert s.qlog("TRANSFER") == ["1700000050|c1|support|alice|TRANSFER|carol|attended|1|39|1"]
    assert not [line for line in s.qlog("ENTERQUEUE", "CONNECT") if k in line]  # internal: no queue_log
    s.send(AgentHangup("carol", "c1"), at=70)
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.agent, rec.outcome, rec.transfers, rec.talk_s) == ("carol", "answered", ("agent:carol",), 59)
    assert [r.call_id for r in s.of(CallRecord)] == ["c1"]  # the consultation has no CDR
    assert s.state("carol") == "wrap-up"


def test_consult_cancelled_or_hung_up_returns_the_caller() -> None:
    s = consulting()
    k = s.of(ConsultStarted)[0].consult
    s.send(OfferAnswered("carol", k), at=35)
    s.send(ConsultCancel("alice", "c1"), at=40)
    assert s.of(ConsultEnded)[-1].reason == "cancelled" and s.state("carol") == "wrap-up"
    assert s.state("alice") == "on-call" and s.engine.call_view("c1").consult == ""
    s.send(ConsultCall("alice", "c1", queue="sales"), at=41)  # bob's queue: nobody there yet
    k2 = s.of(ConsultStarted)[-1].consult
    assert s.call_state(k2) == "queued"
    s.send(AgentLogin("bob"), at=42)
    assert s.of(OfferCall)[-1].call == "early"  # waiting longer than the consultation
    s.send(OfferAnswered("bob", "early"), at=43)
    s.send(CallerHangup("early"), at=44)
    assert s.of(OfferCall)[-1].call == k2
    s.send(OfferAnswered("bob", k2), at=47)
    s.send(AgentHangup("bob", k2), at=50)  # the consulted agent hangs up
    assert s.of(ConsultEnded)[-1] == ConsultEnded("c1", k2, "alice", "bob", "agent-hangup")
    assert s.state("alice") == "on-call"


def test_caller_hangup_during_a_consultation_ends_it() -> None:
    s = consulting()
    k = s.of(ConsultStarted)[0].consult
    s.send(OfferAnswered("carol", k), at=35)
    s.send(CallerHangup("c1"), at=40)
    assert s.of(ConsultEnded)[-1] == ConsultEnded("c1", k, "alice", "carol", "caller-hangup")
    assert s.state("alice") == "wrap-up" and s.state("carol") == "wrap-up"
    assert s.call_state(k) == "ended"


def test_refused_consultations() -> None:
    s = consulting()
    k = s.of(ConsultStarted)[0].consult
    with pytest.raises(EngineError, match="already running"):
        s.send(ConsultCall("alice", "c1", queue="sales"), at=31)
    with pytest.raises(EngineError, match="has not answered"):
        s.send(ConsultComplete("alice", "c1"), at=31)
    s.send(OfferAnswered("carol", k), at=35)
    with pytest.raises(EngineError, match="is a consultation"):
        s.send(TransferCall("carol", k, queue="sales"), at=36)
    s.send(ConsultCancel("alice", "c1"), at=37)
    with pytest.raises(EngineError, match="no consultation"):
        s.send(ConsultCancel("alice", "c1"), at=38)
