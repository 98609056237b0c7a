"""Agent lifecycle on virtual time: login, breaks, wrap-up, no-answer pause, recovery, logout."""

from __future__ import annotations

import pytest

from acd.engine.actions import CancelOffer, OfferCall
from acd.engine.core import InvalidTransition, UnknownAgent, UnknownBreakReason
from acd.engine.events import (
    AgentBreak,
    AgentHangup,
    AgentLogin,
    AgentLogout,
    AgentReady,
    CallEnters,
    CallerHangup,
    FlagDifficult,
    OfferAnswered,
    OfferRejected,
    WrapUpDone,
)
from acd.engine.records import AgentStateRecord, CallRecord, OfferRecord

from tests.engine.helpers import Sim, config

QUEUES = {"support": {"wrapup_s": 30, "ring_timeout_s": 15},
          "sales": {"wrapup_s": 5}}
AGENTS = {"alice": {"queues": {"support": 3, "sales": 1}},
          "bob": {"queues": {"support": 2}, "wrapup_override_s": 50},
          "carol": {"queues": {"support": 1}, "max_wrapup_s": 12}}
ACD = {"no_answer_limit": 2, "reject_delay_s": 10, "reconcile_after_s": 0,
       "breaks": {"lunch": {"label": "Lunch"}, "training": {"auto_ready_s": 600}}}


def sim(**acd: object) -> Sim:
    return Sim(config(QUEUES, AGENTS, {**ACD, **acd}))


def connect(s: Sim, call: str, agent: str, at: float | None = None) -> None:
    s.send(CallEnters(call, "support", caller="5551234"), at)
    assert s.engine.agent_view(agent).call == call, s.engine.agent_view(agent)
    s.send(OfferAnswered(agent, call, leg=f"leg-{call}"))


def test_login_logout_and_membership_lines() -> None:
    s = sim()
    s.send(AgentLogin("alice"), at=10)
    assert s.state("alice") == "available"
    assert s.engine.agent_view("alice").queues == (("support", 3), ("sales", 1))
    s.send(AgentLogout("alice"), at=70)
    assert s.state("alice") == "logged-out"
    assert s.qlog() == [
        "1700000010|NONE|support|alice|ADDMEMBER|",
        "1700000010|NONE|sales|alice|ADDMEMBER|",
        "1700000070|NONE|support|alice|REMOVEMEMBER|",
        "1700000070|NONE|sales|alice|REMOVEMEMBER|",
    ]
    recs = s.of(AgentStateRecord, agent="alice")
    assert [(r.from_state, r.to_state, r.duration_s) for r in recs] == [
        ("logged-out", "available", 10.0), ("available", "logged-out", 60.0)]


def test_login_to_a_subset_of_queues() -> None:
    s = sim()
    s.send(AgentLogin("alice", queues=("sales",)))
    assert s.engine.agent_view("alice").queues == (("sales", 1),)


def test_duplicates_are_counted_not_errors() -> None:
    s = sim()
    s.send(AgentLogout("alice"))
    s.send(AgentLogin("alice"))
    s.send(AgentLogin("alice"))
    s.send(AgentReady("alice"))
    s.send(WrapUpDone("alice"))
    st = s.engine.stats
    assert st["agent:logged-out:logout"] == 1
    assert st["agent:available:login"] == 1
    assert st["agent:available:ready"] == 1
    assert st["agent:available:wrapup_done"] == 1


def test_misuse_raises() -> None:
    s = sim()
    with pytest.raises(UnknownAgent):
        s.send(AgentLogin("mallory"))
    with pytest.raises(InvalidTransition):
        s.send(AgentReady("alice"))  # logged out: the server must log in first
    s.send(AgentLogin("alice"))
    with pytest.raises(UnknownBreakReason):
        s.send(AgentBreak("alice", "nap"))


def test_break_pause_lines_and_auto_ready() -> None:
    s = sim()
    s.send(AgentLogin("alice", queues=("support",)))
    s.send(AgentBreak("alice", "lunch"), at=100)
    assert s.state("alice") == "break"
    s.send(CallEnters("c1", "support"), at=110)
    assert s.call_state("c1") == "queued"  # nobody available
    s.send(AgentBreak("alice", "training"), at=200)  # change of reason
    s.advance(799)
    assert s.state("alice") == "break"
    s.advance(800)  # training auto-ends after 600 s
    assert s.state("alice") == "reserved"
    assert s.qlog("PAUSE", "UNPAUSE") == [
        "1700000100|NONE|support|alice|PAUSE|lunch",
        "1700000200|NONE|support|alice|PAUSE|training",
        "1700000800|NONE|support|alice|UNPAUSE|training",
    ]


def test_wrapup_ends_by_timer() -> None:
    s = sim()
    s.send(AgentLogin("alice"))
    connect(s, "c1", "alice", at=0)
    s.send(CallerHangup("c1"), at=100)
    assert s.state("alice") == "wrap-up"
    s.send(CallEnters("c2", "support"), at=110)
    s.advance(129.9)
    assert s.state("alice") == "wrap-up"  # a waiting call never shortens wrap-up
    s.advance(130)
    assert s.state("alice") == "reserved"
    assert s.transitions("alice")[-2:] == [("available", "wrapup-timeout"), ("reserved", "offer")]


def test_wrapup_done_early_then_late_done_is_ignored() -> None:
    s = sim()
    s.send(AgentLogin("alice"))
    connect(s, "c1", "alice")
    s.send(AgentHangup("alice", "c1"), at=60)
    s.send(WrapUpDone("alice"), at=65)
    assert s.state("alice") == "available"
    s.advance(200)  # the cancelled wrap-up timer never fires
    s.send(WrapUpDone("alice"))
    assert s.engine.stats["agent:available:wrapup_done"] == 1
    assert [r.duration_s for r in s.of(AgentStateRecord, agent="alice", from_state="wrap-up")] == [5.0]


def test_wrapup_override_and_caps() -> None:
    s = sim(max_wrapup_s=40)
    for a in ("bob", "carol"):
        s.send(AgentLogin(a))
    connect(s, "c1", "bob")  # override 50, capped at 40 by [acd]
    connect(s, "c2", "carol")  # queue 30, capped at 12 by the agent
    s.send(CallerHangup("c1"), at=10)
    s.send(CallerHangup("c2"), at=10)
    s.advance(1000)
    ends = {r.agent: r.time - 1_700_000_000 for r in s.of(AgentStateRecord, from_state="wrap-up")}
    assert ends == {"bob": 50.0, "carol": 22.0}


def test_no_answer_limit_pauses_agent() -> None:
    s = sim()
    s.send(AgentLogin("alice", queues=("support",)))
    s.send(CallEnters("c1", "support"), at=0)
    s.advance(15)  # ring timeout 15 s
    assert s.of(CancelOffer, reason="timeout")
    assert s.state("alice") == "available"  # 1 of 2; c1 not re-offered for 10 s
    assert s.call_state("c1") == "queued"
    s.advance(25)  # reject_delay over: offered again
    assert s.state("alice") == "reserved"
    s.advance(40)  # second no-answer
    assert s.state("alice") == "break"
    assert s.engine.agent_view("alice").reason == "no-answer"
    assert s.qlog("RINGNOANSWER", "PAUSE") == [
        "1700000015|c1|support|alice|RINGNOANSWER|15000",
        "1700000040|c1|support|alice|RINGNOANSWER|15000",
        "1700000040|NONE|support|alice|PAUSE|no-answer",
    ]
    assert [o.outcome for o in s.of(OfferRecord)] == ["no-answer", "no-answer"]


def test_answer_resets_no_answer_streak() -> None:
    s = sim()
    s.send(AgentLogin("alice", queues=("support",)))
    s.send(CallEnters("c1", "support"), at=0)
    s.advance(15)
    s.advance(25)
    s.send(OfferAnswered("alice", "c1"), at=26)
    assert s.engine.agent_view("alice").no_answer_streak == 0


def test_reject_is_not_a_no_answer_and_call_keeps_its_head() -> None:
    s = sim()
    s.send(AgentLogin("alice", queues=("support",)))
    s.send(CallEnters("c1", "support"), at=0)
    s.send(CallEnters("c2", "support"), at=1)
    s.send(OfferRejected("alice", "c1"), at=2)
    assert s.engine.agent_view("alice").no_answer_streak == 0
    # alice is not offered c1 again for 10 s, so she gets c2 meanwhile
    assert s.engine.agent_view("alice").call == "c2"
    assert s.engine.call_view("c1").position == 1  # c1 kept its place at the head


def test_difficult_call_gives_recovery_break_after_wrapup() -> None:
    s = sim()
    s.send(AgentLogin("alice"))
    connect(s, "c1", "alice")
    s.send(FlagDifficult("alice"), at=30)
    s.send(CallerHangup("c1"), at=60)
    assert s.state("alice") == "wrap-up"
    s.send(CallEnters("c2", "support"), at=61)
    s.advance(90)  # wrap-up 30 s, then recovery (120 s by default)
    assert s.state("alice") == "break"
    assert s.engine.agent_view("alice").reason == "recovery"
    assert s.call_state("c2") == "queued"
    s.advance(210)
    assert s.state("alice") == "reserved"
    assert s.engine.agent_view("alice").call == "c2"


def test_flag_after_wrapup_ended_starts_recovery_now() -> None:
    s = sim()
    s.send(AgentLogin("alice"))
    connect(s, "c1", "alice")
    s.send(CallerHangup("c1"), at=10)
    s.send(WrapUpDone("alice"), at=11)
    s.send(FlagDifficult("alice"), at=12)
    assert (s.state("alice"), s.engine.agent_view("alice").reason) == ("break", "recovery")


def test_logout_on_call_finishes_call_and_wrapup_first() -> None:
    s = sim()
    s.send(AgentLogin("alice"))
    connect(s, "c1", "alice")
    s.send(AgentLogout("alice"), at=10)
    v = s.engine.agent_view("alice")
    assert (v.state, v.pending) == ("on-call", "logout")
    s.send(CallEnters("c2", "support"), at=11)
    assert s.call_state("c2") == "queued"  # no second call while on a call
    s.send(CallerHangup("c1"), at=20)
    assert s.state("alice") == "wrap-up"
    s.advance(50)
    assert s.state("alice") == "logged-out"
    assert s.call_state("c2") == "queued"
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.outcome, rec.talk_s) == ("answered", 20.0)


def test_break_while_reserved_waits_for_the_offer() -> None:
    s = sim()
    s.send(AgentLogin("alice", queues=("support",)))
    s.send(CallEnters("c1", "support"), at=0)
    s.send(AgentBreak("alice", "lunch"), at=1)
    assert s.engine.agent_view("alice").pending == "break:lunch"
    s.send(OfferRejected("alice", "c1"), at=2)
    assert (s.state("alice"), s.engine.agent_view("alice").reason) == ("break", "lunch")


def test_ready_cancels_a_pending_break() -> None:
    s = sim()
    s.send(AgentLogin("alice"))
    connect(s, "c1", "alice")
    s.send(AgentBreak("alice", "lunch"))
    s.send(AgentReady("alice"))
    s.send(CallerHangup("c1"), at=5)
    s.advance(35)
    assert s.state("alice") == "available"


def test_agent_on_call_is_never_offered() -> None:
    s = sim()
    s.send(AgentLogin("alice"))
    connect(s, "c1", "alice")
    s.send(CallEnters("c2", "support"), at=1)
    s.send(CallEnters("c3", "sales"), at=2)
    assert [o.call for o in s.of(OfferCall, agent="alice")] == ["c1"]
