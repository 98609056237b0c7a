"""Queue features: overflow, join/leave rules, exit key, announcements, EWT, callbacks."""

from __future__ import annotations

import pytest

from acd.engine.actions import (
    Announce,
    CallbackScheduled,
    ConnectCall,
    ExitQueue,
    HangupCall,
    JoinRejected,
    MoveQueue,
    OfferCall,
    Ringback,
    StartMusic,
)
from acd.engine.events import (
    AgentBreak,
    AgentHangup,
    AgentLogin,
    AgentLogout,
    AgentReady,
    CallbackFailed,
    CallbackRequest,
    CallEnters,
    CallerDigit,
    CallerHangup,
    OfferAnswered,
    OfferRejected,
    WrapUpDone,
)
from acd.engine.records import CallRecord

from tests.engine.helpers import Sim, config

ACD = {"reconcile_after_s": 0, "breaks": {"lunch": {}}}


def make(queues: dict, agents: dict | None = None, **acd: object) -> Sim:
    return Sim(config(queues, agents or {}, {**ACD, **acd}))


# -- max wait and overflow --------------------------------------------------------------


def test_overflow_to_another_queue_keeps_the_enter_time() -> None:
    queues = {"first": {"max_wait_s": 60, "overflow": {"action": "queue", "target": "second"}},
              "second": {"wrapup_s": 0}}
    s = make(queues, {"z": {"queues": {"second": 1}}})
    s.send(AgentLogin("z"))
    s.send(CallEnters("old", "second"), at=0)  # z takes it
    s.send(OfferAnswered("z", "old"))
    s.send(CallEnters("c1", "first", caller="5551234"), at=10)
    s.send(CallEnters("late", "second"), at=40)  # entered second before c1 arrives there
    s.advance(70)
    assert s.of(MoveQueue) == [MoveQueue("c1", "first", "second", "timeout", "")]
    v = s.engine.call_view("c1")
    assert (v.queue, v.enter_time, v.position) == ("second", 10.0, 1)  # ahead of "late"
    assert s.qlog("EXITWITHTIMEOUT", "ENTERQUEUE")[-2:] == [
        "1700000070|c1|first|NONE|EXITWITHTIMEOUT|1|1|60",
        "1700000070|c1|second|NONE|ENTERQUEUE||5551234|1",
    ]
    s.send(CallerHangup("old"), at=80)
    assert s.of(OfferCall)[-1].call == "c1"
    s.send(OfferAnswered("z", "c1"), at=81)
    s.send(CallerHangup("c1"), at=100)
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.queue, rec.first_queue, rec.overflowed_from, rec.wait_s) == (
        "second", "first", ("first",), 71.0)


def test_overflow_without_keeping_the_enter_time() -> None:
    queues = {"first": {"max_wait_s": 60, "overflow": {"action": "queue", "target": "second",
                                                         "keep_enter_time": False}},
              "second": {}}
    s = make(queues)
    s.send(CallEnters("c1", "first"), at=10)
    s.send(CallEnters("c2", "second"), at=40)
    s.advance(70)
    assert s.engine.call_view("c1").position == 2


@pytest.mark.parametrize("action,target,outcome", [("hangup", "", "timeout"),
                                                   ("voicemail", "support-box", "overflow")])
def test_max_wait_leaves_with_an_action(action: str, target: str, outcome: str) -> None:
    ov = {"action": action, "prompt": "sorry"} | ({"target": target} if target else {})
    s = make({"q": {"max_wait_s": 90, "overflow": ov}})
    s.send(CallEnters("c1", "q"), at=0)
    s.advance(89.9)
    assert not s.of(ExitQueue)
    s.advance(90)
    assert s.of(ExitQueue) == [ExitQueue("c1", "q", "timeout", action, target, "sorry")]
    rec = s.records()[0]
    assert (rec.outcome, rec.wait_s) == (outcome, 90.0)
    assert s.call_state("c1") == "ended"


def test_max_wait_while_ringing_waits_for_the_offer() -> None:
    s = make({"q": {"max_wait_s": 30, "ring_timeout_s": 20}}, {"a": {"queues": {"q": 1}}})
    s.send(CallEnters("c1", "q"), at=0)
    s.send(AgentLogin("a"), at=25)  # offered at 25, max wait falls at 30
    s.advance(40)
    assert s.call_state("c1") == "offered"
    s.send(OfferAnswered("a", "c1"), at=41)
    assert s.call_state("c1") == "connected"
    s2 = make({"q": {"max_wait_s": 30, "ring_timeout_s": 20}}, {"a": {"queues": {"q": 1}}})
    s2.send(CallEnters("c1", "q"), at=0)
    s2.send(AgentLogin("a"), at=25)
    s2.send(OfferRejected("a", "c1"), at=35)
    assert s2.of(ExitQueue)[0].reason == "timeout"  # applied when the offer failed


# -- join and leave rules ---------------------------------------------------------------


def test_max_len_rejects_as_full() -> None:
    s = make({"q": {"max_len": 2}})
    for i in range(3):
        s.send(CallEnters(f"c{i}", "q"), at=i)
    assert s.of(JoinRejected) == [JoinRejected("c2", "q", "full")]
    assert s.qlog("FULL") == ["1700000002|c2|q|NONE|FULL|"]
    assert [r.outcome for r in s.records()] == ["rejected"]


def test_join_empty_no_and_strict() -> None:
    agents = {"a": {"queues": {"no": 1, "strict": 1}}}
    s = make({"no": {"join_empty": "no"}, "strict": {"join_empty": "strict"}}, agents)
    s.send(CallEnters("c1", "no"))
    s.send(AgentLogin("a"))
    s.send(AgentBreak("a", "lunch"))
    s.send(CallEnters("c2", "no"))  # a logged in (on break): may join
    s.send(CallEnters("c3", "strict"))  # nobody staffed
    assert [(r.call, r.reason) for r in s.of(JoinRejected)] == [("c1", "join-empty"),
                                                                 ("c3", "join-empty")]
    assert s.call_state("c2") == "queued"
    assert s.qlog("JOINEMPTY") == ["1700000000|c1|no|NONE|JOINEMPTY|",
                                   "1700000000|c3|strict|NONE|JOINEMPTY|"]


def test_join_empty_counts_only_members_who_could_serve() -> None:
    queues = {"q": {"join_empty": "no", "min_level": 3}}
    s = make(queues, {"low": {"queues": {"q": 1}}})
    s.send(AgentLogin("low"))
    s.send(CallEnters("c1", "q"))
    assert s.of(JoinRejected)[0].reason == "join-empty"


def test_leave_when_empty() -> None:
    queues = {"q": {"leave_when_empty": "yes", "overflow": {"action": "voicemail",
                                                            "target": "box"}}}
    s = make(queues, {"a": {"queues": {"q": 1}}, "b": {"queues": {"q": 1}}})
    s.send(AgentLogin("a"))
    s.send(AgentLogin("b"))
    s.send(CallEnters("busy", "q"), at=0)
    s.send(OfferAnswered(s.of(OfferCall)[0].agent, "busy"))
    s.send(CallEnters("busy2", "q"), at=1)
    s.send(OfferAnswered(s.of(OfferCall)[1].agent, "busy2"))
    s.send(CallEnters("c1", "q"), at=5)
    s.send(AgentLogout("a"), at=10)
    s.send(AgentLogout("b"), at=11)  # both on calls: logouts pending, still members
    assert s.call_state("c1") == "queued"
    s.send(CallerHangup("busy"), at=20)
    s.send(CallerHangup("busy2"), at=21)
    s.advance(60)  # wrap-ups end: the last member leaves at 31
    assert s.of(ExitQueue) == [ExitQueue("c1", "q", "leave-empty", "voicemail", "box")]
    assert s.qlog("EXITEMPTY") == ["1700000031|c1|q|NONE|EXITEMPTY|1|1|26"]
    assert s.of(CallRecord, call_id="c1")[0].outcome == "leave-empty"


# -- exit key ---------------------------------------------------------------------------


def test_exit_key() -> None:
    s = make({"q": {"exit_key": "0", "exit_target": "operator"}})
    s.send(CallEnters("c0", "q"), at=0)
    s.send(CallEnters("c1", "q"), at=3)
    s.send(CallerDigit("c1", "5"), at=9)  # not a key of this queue
    s.send(CallerDigit("c1", "0"), at=10)
    assert s.of(ExitQueue) == [ExitQueue("c1", "q", "exit-key", "continue", "operator", "", "0")]
    assert s.qlog("EXITWITHKEY") == ["1700000010|c1|q|NONE|EXITWITHKEY|0|2|2|7"]
    assert s.engine.stats["call:queued:digit-ignored"] == 1
    assert s.records()[0].outcome == "exit-key"


# -- caller experience ------------------------------------------------------------------


def test_position_announcements_only_when_position_changes() -> None:
    q = {"q": {"announce_position_every_s": 30, "announce_holdtime": True}}
    s = make(q, {"a": {"queues": {"q": 1}}})
    s.send(AgentLogin("a"))
    s.send(CallEnters("busy", "q"), at=0)
    s.send(OfferAnswered("a", "busy"), at=1)
    s.send(CallEnters("c1", "q"), at=10)
    s.send(CallEnters("c2", "q"), at=20)
    s.advance(40)  # c1 at 40: still 1st: no announcement
    s.send(CallerHangup("c1"), at=45)
    s.advance(80)  # c2 at 50: moved to 1st; at 80: unchanged
    got = [(t, a.call, a.position) for t, a in s.timed(Announce)]
    assert got == [(10.0, "c1", 1), (20.0, "c2", 2), (50.0, "c2", 1)]
    first = s.of(Announce)[0]
    assert first.kind == "position" and first.ewt_s == pytest.approx(180.0)  # 1 x 180 / 1


def test_periodic_announcements_and_music() -> None:
    q = {"q": {"periodic_announce_every_s": 45, "periodic_prompt": "thanks-for-waiting",
               "music": "jazz"}}
    s = make(q, {"a": {"queues": {"q": 1}}})
    s.send(CallEnters("c1", "q"), at=0)
    s.advance(100)
    assert s.of(StartMusic) == [StartMusic("c1", "jazz")]
    assert [t for t, a in s.timed(Announce, kind="periodic")] == [45.0, 90.0]
    s.send(AgentLogin("a"), at=100)
    assert s.of(Ringback) == [Ringback("c1")]
    s.send(OfferRejected("a", "c1"), at=101)
    assert s.of(StartMusic)[-1] == StartMusic("c1", "jazz")  # back to music


def test_ewt_at_entry_recorded_against_actual_wait() -> None:
    q = {"q": {"announce_position_every_s": 60, "announce_holdtime": True, "wrapup_s": 0}}
    s = make(q, {"a": {"queues": {"q": 1}}, "b": {"queues": {"q": 1}}}, aht_default_s=100)
    s.send(AgentLogin("a"))
    s.send(AgentLogin("b"))
    for c in ("x", "y"):
        s.send(CallEnters(c, "q"), at=0)
        s.send(OfferAnswered(s.of(OfferCall)[-1].agent, c))
    s.send(CallEnters("c1", "q"), at=5)  # position 1, 2 busy agents: 1 x 100 / 2
    s.send(AgentHangup("a", "x"), at=35)
    s.send(OfferAnswered("a", "c1"), at=36)
    s.send(CallerHangup("c1"), at=60)
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.ewt_at_entry_s, rec.ewt_announced, rec.wait_s) == (50.0, True, 31.0)


# -- callbacks --------------------------------------------------------------------------

CB = {"q": {"callback": {"offer_after_s": 60, "key": "1", "prompt": "press-1",
                         "confirm_prompt": "we-will-call", "expire_s": 3600},
            "wrapup_s": 0}}


def test_callback_keeps_the_queue_position() -> None:
    s = make(CB, {"a": {"queues": {"q": 1}}})
    s.send(CallEnters("c1", "q", caller="5551111"), at=0)
    s.send(CallEnters("c2", "q", caller="5552222"), at=10)
    s.advance(60)
    assert s.of(Announce, kind="callback-offer") == [
        Announce("c1", "q", "callback-offer", prompt="press-1", key="1")]
    s.send(CallerDigit("c1", "1"), at=65)
    assert s.of(CallbackScheduled) == [CallbackScheduled("c1", "q", "5551111", "we-will-call")]
    assert s.call_state("c1") == "callback-pending"
    s.send(CallerHangup("c1"), at=66)  # the server releases the caller leg: ignored
    s.send(CallEnters("c3", "q"), at=70)
    assert [s.engine.call_view(c).position for c in ("c1", "c2", "c3")] == [1, 2, 3]
    s.send(AgentLogin("a"), at=100)
    offer = s.of(OfferCall)[0]
    assert (offer.call, offer.callback_number) == ("c1", "5551111")
    s.send(OfferAnswered("a", "c1", leg="LA"), at=105)
    assert s.of(ConnectCall)[0] == ConnectCall("c1", "a", "LA", "5551111")
    s.send(CallbackFailed("c1"), at=130)  # not reached: dialled again later, place kept
    assert s.call_state("c1") == "callback-retry" and not s.of(CallRecord, call_id="c1")
    assert s.engine.call_view("c1").position == 1
    assert s.qlog("CALLBACK") == ["1700000065|c1|q|NONE|CALLBACK|1|1|65|5551111"]
    assert s.qlog("CALLBACKFAILED") == ["1700000130|c1|q|a|CALLBACKFAILED|1|3|5551111"]


CB_RETRY = {"q": {"callback": {"offer_after_s": 60, "key": "1", "attempts": 2,
                               "retry_after_s": 60, "expire_s": 3600}, "wrapup_s": 0}}


def test_callback_retries_after_the_delay_then_fails_for_good() -> None:
    s = make(CB_RETRY, {"a": {"queues": {"q": 1}}})
    s.send(AgentLogin("a"), at=0)
    s.send(AgentBreak("a", "lunch"), at=0)
    s.send(CallEnters("c1", "q", caller="5551111"), at=0)
    s.send(CallbackRequest("c1"), at=5)
    s.send(AgentReady("a"), at=100)
    s.send(OfferAnswered("a", "c1"), at=101)
    s.send(CallbackFailed("c1"), at=120)
    s.send(CallEnters("c2", "q"), at=121)  # the agent is free for others meanwhile
    assert s.of(OfferCall)[-1].call == "c2"
    s.send(OfferAnswered("a", "c2"), at=122)
    s.send(CallerHangup("c2"), at=125)
    s.advance(179)
    assert [o.call for o in s.of(OfferCall)] == ["c1", "c2"]  # not before retry_after_s
    s.advance(180)
    assert [o.call for o in s.of(OfferCall)] == ["c1", "c2", "c1"]
    s.send(OfferAnswered("a", "c1"), at=181)
    assert [c.callback_number for c in s.of(ConnectCall, call="c1")] == ["5551111", "5551111"]
    s.send(CallbackFailed("c1"), at=200)
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.outcome, rec.reason, rec.callback_attempts, rec.callback_number) == \
        ("callback-failed", "customer-unreached", 2, "5551111")
    assert len(s.qlog("CALLBACKFAILED")) == 2 and s.call_state("c1") == "ended"


def test_callback_reached_on_the_second_attempt() -> None:
    s = make(CB_RETRY, {"a": {"queues": {"q": 1}}})
    s.send(CallEnters("c1", "q", caller="5551111"), at=0)
    s.send(CallbackRequest("c1"), at=5)
    s.send(AgentLogin("a"), at=10)
    s.send(OfferAnswered("a", "c1"), at=11)
    s.send(CallbackFailed("c1"), at=20)
    s.advance(80)
    s.send(OfferAnswered("a", "c1"), at=81)
    s.send(CallerHangup("c1"), at=140)  # the customer answered and hung up later
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.outcome, rec.callback_attempts) == ("answered", 2)


def test_callback_not_retried_past_its_expiry() -> None:
    cfg = {"q": {"callback": {"offer_after_s": 60, "key": "1", "attempts": 5,
                              "retry_after_s": 600, "expire_s": 300}, "wrapup_s": 0}}
    s = make(cfg, {"a": {"queues": {"q": 1}}})
    s.send(CallEnters("c1", "q", caller="555"), at=0)
    s.send(CallbackRequest("c1"), at=5)
    s.send(AgentLogin("a"), at=10)
    s.send(OfferAnswered("a", "c1"), at=11)
    s.send(CallbackFailed("c1"), at=20)  # a retry would come after the expiry
    assert s.of(CallRecord, call_id="c1")[0].outcome == "callback-failed"


def test_callback_request_and_expiry() -> None:
    s = make(CB)
    s.send(CallEnters("c1", "q", caller="555"), at=0)
    s.send(CallbackRequest("c1", "0612345678"), at=5)
    assert s.of(CallbackScheduled)[0].number == "0612345678"
    s.advance(3605)
    assert s.of(HangupCall) == [HangupCall("c1", "callback-expired")]
    assert s.records()[0].outcome == "callback-expired"


def test_overflow_to_callback() -> None:
    q = {"q": {"max_wait_s": 120, "overflow": {"action": "callback", "prompt": "cb"}}}
    s = make(q)
    s.send(CallEnters("c1", "q", caller="555"), at=0)
    s.advance(120)
    assert s.of(CallbackScheduled) == [CallbackScheduled("c1", "q", "555", "cb")]
    assert s.call_state("c1") == "callback-pending"


def test_answered_callback_completes_normally() -> None:
    s = make(CB, {"a": {"queues": {"q": 1}}})
    s.send(CallEnters("c1", "q"), at=0)
    s.send(CallbackRequest("c1"), at=1)
    s.send(AgentLogin("a"), at=2)
    s.send(OfferAnswered("a", "c1"), at=3)
    s.send(AgentHangup("a", "c1"), at=50)
    s.send(WrapUpDone("a"))
    rec = s.records()[0]
    assert (rec.outcome, rec.talk_s, rec.callback) == ("answered", 47.0, True)
