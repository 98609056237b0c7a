"""Routing: strategies, skill levels and widening by timer, priorities, cross-queue fairness,
ring-all, rejects returning to the head."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.engine.actions import CancelOffer, OfferCall, RejectLateAnswer
from acd.engine.config import QueueConfig
from acd.engine.core import Agent, Call
from acd.engine.events import (
    AgentHangup,
    AgentLogin,
    AgentLogout,
    CallEnters,
    CallerHangup,
    OfferAnswered,
    OfferRejected,
    WrapUpDone,
)
from acd.engine.queues import QueueState
from acd.engine.records import CallRecord, OfferRecord
from acd.engine.routing import pick_agents
from acd.engine.strategies import Strategy, register_strategy, strategy_class, strategy_names

from tests.engine.helpers import Sim, config

NO_RECONCILE = {"reconcile_after_s": 0, "reject_delay_s": 10}


def one_queue(strategy: str, n: int = 3, **queue: Any) -> Sim:
    agents = {f"a{i}": {"queues": {"q": 1}} for i in range(n)}
    return Sim(config({"q": {"strategy": strategy, "wrapup_s": 0, **queue}}, agents, NO_RECONCILE))


def handle_call(s: Sim, call: str, at: float, talk: float = 10.0) -> str:
    """A call enters, is answered by whoever it is offered to, and ends after ``talk``."""
    s.send(CallEnters(call, "q"), at=at)
    offers = s.of(OfferCall, call=call)
    assert len(offers) == 1, offers
    agent = offers[0].agent
    s.send(OfferAnswered(agent, call))
    s.send(AgentHangup(agent, call), at=at + talk)
    return agent


# -- strategies ------------------------------------------------------------------------


def test_registry_has_every_strategy() -> None:
    assert set(strategy_names()) >= {"longest-idle", "rrmemory", "fewest-calls",
                                     "least-talk-time", "ring-all", "linear", "random"}


def test_a_new_strategy_is_one_class() -> None:
    @register_strategy("test-reverse-linear")
    class ReverseLinear(Strategy):
        def order(self, queue, call, candidates, now):  # type: ignore[no-untyped-def]
            return sorted(candidates, key=lambda a: -a.index)

    s = one_queue("test-reverse-linear")
    for i in range(3):
        s.send(AgentLogin(f"a{i}"))
    s.send(CallEnters("c1", "q"))
    assert s.of(OfferCall)[0].agent == "a2"


def test_longest_idle() -> None:
    s = one_queue("longest-idle")
    s.send(AgentLogin("a1"), at=0)
    s.send(AgentLogin("a2"), at=5)
    s.send(AgentLogin("a0"), at=10)
    assert handle_call(s, "c1", at=20) == "a1"  # available since 0
    assert handle_call(s, "c2", at=40) == "a2"  # a1 is available again only since 30
    assert handle_call(s, "c3", at=60) == "a0"
    assert handle_call(s, "c4", at=80) == "a1"


def test_fewest_calls() -> None:
    s = one_queue("fewest-calls")
    for i in range(3):
        s.send(AgentLogin(f"a{i}"), at=i)
    # a0 (idle longest) takes 2 calls while a1 and a2 are logged out
    s.send(AgentLogout("a1"))
    s.send(AgentLogout("a2"))
    handle_call(s, "c1", at=10)
    handle_call(s, "c2", at=30)
    s.send(AgentLogin("a1"), at=50)
    handle_call(s, "c3", at=55)  # a1 (0 calls) beats a0 (2 calls) though a0 idles longer
    assert s.of(OfferCall, call="c3")[0].agent == "a1"
    s.send(AgentLogin("a2"), at=70)
    assert handle_call(s, "c4", at=80) == "a2"
    assert handle_call(s, "c5", at=100) == "a1"  # a1 and a0: 1 vs 2 calls


def test_least_talk_time() -> None:
    s = one_queue("least-talk-time")
    for i in range(3):
        s.send(AgentLogin(f"a{i}"), at=i)
    assert handle_call(s, "c1", at=10, talk=100) == "a0"
    assert handle_call(s, "c2", at=200, talk=30) == "a1"
    assert handle_call(s, "c3", at=300, talk=10) == "a2"
    assert handle_call(s, "c4", at=400) == "a2"  # 10 s talked
    assert handle_call(s, "c5", at=500) == "a2"  # 20 s
    assert handle_call(s, "c6", at=600) == "a1"  # 30 s each: the longest idle wins
    assert handle_call(s, "c7", at=700) == "a2"  # a1 40 s, a2 30 s


def test_linear_always_first_member() -> None:
    s = one_queue("linear")
    for i in (2, 1, 0):
        s.send(AgentLogin(f"a{i}"), at=3 - i)
    assert [handle_call(s, f"c{i}", at=10 * (i + 1)) for i in range(3)] == ["a0"] * 3
    s.send(CallEnters("x1", "q"), at=100)
    s.send(CallEnters("x2", "q"), at=100)
    assert [o.agent for o in s.of(OfferCall, since=100)] == ["a0", "a1"]


def test_rrmemory_rotates_after_the_last_offered() -> None:
    s = one_queue("rrmemory", n=4)
    for i in range(4):
        s.send(AgentLogin(f"a{i}"))
    got = [handle_call(s, f"c{i}", at=10 * (i + 1)) for i in range(6)]
    assert got == ["a0", "a1", "a2", "a3", "a0", "a1"]
    s.send(AgentLogout("a2"), at=100)
    got = [handle_call(s, f"d{i}", at=200 + 10 * i) for i in range(3)]
    assert got == ["a3", "a0", "a1"]  # memory continues after a1, a2 is gone


def test_random_is_seeded() -> None:
    def run(seed: int) -> list[str]:
        agents = {f"a{i}": {"queues": {"q": 1}} for i in range(5)}
        s = Sim(config({"q": {"strategy": "random", "wrapup_s": 0}}, agents, NO_RECONCILE),
                seed=seed)
        for i in range(5):
            s.send(AgentLogin(f"a{i}"))
        return [handle_call(s, f"c{i}", at=10 * (i + 1)) for i in range(30)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert len(set(run(7))) == 5


def test_ring_all_first_answer_wins() -> None:
    s = one_queue("ring-all")
    for i in range(3):
        s.send(AgentLogin(f"a{i}"))
    s.send(CallEnters("c1", "q", caller="5551234"), at=10)
    assert sorted(o.agent for o in s.of(OfferCall)) == ["a0", "a1", "a2"]
    s.send(OfferAnswered("a1", "c1", leg="L1"), at=13)
    assert sorted(c.agent for c in s.of(CancelOffer)) == ["a0", "a2"]
    assert {c.reason for c in s.of(CancelOffer)} == {"answered-elsewhere"}
    assert (s.state("a0"), s.state("a1"), s.state("a2")) == ("available", "on-call", "available")
    s.send(OfferAnswered("a2", "c1"), at=13.2)  # crossed the cancel
    assert s.of(RejectLateAnswer) == [RejectLateAnswer("a2", "c1", "answered-elsewhere")]
    assert s.state("a2") == "available"
    assert sorted(s.qlog("RINGCANCELED", "CONNECT")) == sorted([
        "1700000013|c1|q|a0|RINGCANCELED|3000",
        "1700000013|c1|q|a2|RINGCANCELED|3000",
        "1700000013|c1|q|a1|CONNECT|3|L1|3",
    ])
    outcomes = sorted((o.agent, o.outcome) for o in s.of(OfferRecord))
    assert outcomes == [("a0", "cancelled"), ("a1", "answered"), ("a2", "cancelled")]


def test_ring_all_cancelled_agents_ring_for_the_next_caller() -> None:
    s = one_queue("ring-all")
    for i in range(3):
        s.send(AgentLogin(f"a{i}"))
    s.send(CallEnters("c1", "q"), at=0)
    s.send(CallEnters("c2", "q"), at=1)  # everybody is reserved for c1
    assert not s.of(OfferCall, call="c2")
    s.send(OfferAnswered("a0", "c1"), at=2)
    assert sorted(o.agent for o in s.of(OfferCall, call="c2")) == ["a1", "a2"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["longest-idle", "fewest-calls", "least-talk-time", "linear"]),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 3),
                          st.integers(1, 3)), min_size=1, max_size=12))
def test_indexed_fast_path_agrees_with_order(name: str, rows: list[tuple[int, ...]]) -> None:
    cfg = QueueConfig("q", strategy=name, prefer_higher_level=False)
    strategy = strategy_class(name)(random.Random(0))
    q = QueueState(cfg, strategy)
    agents = []
    for i, (since, calls, talk, level) in enumerate(rows):
        a = Agent(f"a{i}", SimpleNamespace(), i, state="available", available_since=float(since),
                  calls_answered=calls, talk_s=float(talk * 10))
        q.pool_add(a, level)
        agents.append(a)
    call = Call("c", 1, "", "", 0, False, 0.0, 0.0, "q", "q")
    assert pick_agents(q, call, 0.0) == strategy.order(q, call, agents, 0.0)[:1]


# -- skills ----------------------------------------------------------------------------

SKILLED = {"q": {"min_level": 3, "wrapup_s": 0,
                 "skill_widening": [{"after_s": 30, "min_level": 2}, {"after_s": 60, "min_level": 1}]}}
STAFF = {"expert": {"queues": {"q": 3}}, "mid": {"queues": {"q": 2}}, "junior": {"queues": {"q": 1}}}


def test_widening_fires_by_timer_at_exactly_30_and_60_seconds() -> None:
    s = Sim(config(SKILLED, STAFF, NO_RECONCILE))
    s.send(AgentLogin("mid"), at=0)
    s.send(AgentLogin("junior"), at=0)
    s.send(CallEnters("c1", "q"), at=100)
    s.send(CallEnters("c2", "q"), at=110)
    s.advance(129.999)  # no event at all: only timers from here
    assert not s.of(OfferCall)
    s.advance(130)
    assert [(t, o.call, o.agent) for t, o in s.timed(OfferCall)] == [(130.0, "c1", "mid")]
    s.send(OfferAnswered("mid", "c1"))
    s.advance(169.999)  # c2 accepts level 2 at 140, but mid is busy; junior only at 170
    assert len(s.of(OfferCall)) == 1
    s.advance(170)
    assert [(t, o.call, o.agent) for t, o in s.timed(OfferCall)][1:] == [(170.0, "c2", "junior")]


def test_higher_level_preferred_and_skills_required() -> None:
    queues = {"fr": {"skills": ["french"], "wrapup_s": 0}}
    agents = {"ana": {"queues": {"fr": 5}, "skills": {"french": 1}},
              "bea": {"queues": {"fr": 2}, "skills": {"french": 3}},
              "cid": {"queues": {"fr": 9}}}  # no french: never a member
    s = Sim(config(queues, agents, NO_RECONCILE))
    for a in ("cid", "ana", "bea"):
        s.send(AgentLogin(a))
    assert s.engine.agent_view("cid").queues == ()
    s.send(CallEnters("c1", "fr"))
    assert s.of(OfferCall)[0].agent == "bea"  # effective level min(2, 3) = 2 > min(5, 1)


IVR_STAFF = {"fr3": {"queues": {"q": 3}, "skills": {"french": 3}},
             "fr1": {"queues": {"q": 3}, "skills": {"french": 1}},
             "en": {"queues": {"q": 3}}}


def test_call_skills_from_the_ivr_route_only_to_agents_with_them() -> None:
    """A call entering with skills (an IVR option) needs each at the call's level, and the
    skill requirement widens with the queue's steps like the queue level does."""
    s = Sim(config(SKILLED, IVR_STAFF, NO_RECONCILE))
    s.send(AgentLogin("en"), at=0)
    s.send(AgentLogin("fr1"), at=0)
    s.send(CallEnters("c1", "q", skills=("french",), ivr_path=("main:2", "lang:1")), at=0)
    assert not s.of(OfferCall)  # en lacks french; fr1's french 1 < min_level 3
    s.send(CallEnters("c2", "q"), at=1)
    assert [o.call for o in s.of(OfferCall)] == ["c2"]  # c1 does not block the queue
    s.send(AgentLogin("fr3"), at=2)
    offer = s.of(OfferCall)[-1]
    assert (offer.call, offer.agent, offer.ivr_path, offer.skills) == \
        ("c1", "fr3", ("main:2", "lang:1"), ("french",))
    s.send(OfferAnswered("fr3", "c1"), at=3)
    s.send(CallerHangup("c1"), at=9)
    rec = s.of(CallRecord, call_id="c1")[0]
    assert (rec.ivr_path, rec.skills) == (("main:2", "lang:1"), ("french",))


def test_freed_agent_skips_calls_needing_skills_it_lacks() -> None:
    s = Sim(config(SKILLED, IVR_STAFF, NO_RECONCILE))
    s.send(CallEnters("fr", "q", skills=("french",)), at=0)
    s.send(CallEnters("any", "q"), at=5)
    s.send(AgentLogin("en"), at=10)
    assert [o.call for o in s.of(OfferCall)] == ["any"]
    s.send(OfferAnswered("en", "any"), at=11)
    s.send(AgentLogin("fr1"), at=20)
    assert len(s.of(OfferCall)) == 1  # french 1 < 3 until the widening
    s.advance(60)  # min_level 1 at 60 s: fr1 now qualifies
    assert [(t, o.call, o.agent) for t, o in s.timed(OfferCall)][1:] == [(60.0, "fr", "fr1")]


def test_priority_then_longest_wait() -> None:
    s = one_queue("longest-idle", n=1)
    s.send(CallEnters("low", "q", priority=0), at=0)
    s.send(CallEnters("vip", "q", priority=5), at=10)
    s.send(CallEnters("low2", "q", priority=0), at=20)
    s.send(AgentLogin("a0"), at=30)
    assert s.of(OfferCall)[0].call == "vip"
    assert [s.engine.call_view(c).position for c in ("vip", "low", "low2")] == [1, 2, 3]


# -- fairness across queues ------------------------------------------------------------

FAIR_Q = {"a": {"wrapup_s": 0}, "b": {"wrapup_s": 0}, "c": {"wrapup_s": 0, "weight": 10}}
FAIR_AGENTS = {"x": {"queues": {"a": 1, "b": 1}}, "y": {"queues": {"a": 1, "b": 1, "c": 1}}}


def test_agent_in_two_queues_takes_the_longest_waiting_caller() -> None:
    s = Sim(config(FAIR_Q, FAIR_AGENTS, NO_RECONCILE))
    s.send(CallEnters("b1", "b"), at=0)
    s.send(CallEnters("a1", "a"), at=5)
    s.send(CallEnters("b2", "b"), at=6)
    s.send(AgentLogin("x"), at=10)
    assert s.of(OfferCall)[-1].call == "b1"
    s.send(OfferAnswered("x", "b1"))
    s.send(CallerHangup("b1"), at=20)
    assert s.of(OfferCall)[-1].call == "a1"  # 5 < 6: a1 waited longer than b2


def test_queue_weight_is_a_priority_offset_across_queues() -> None:
    s = Sim(config(FAIR_Q, FAIR_AGENTS, NO_RECONCILE))
    s.send(CallEnters("a1", "a", priority=0), at=0)
    s.send(CallEnters("c1", "c", priority=0), at=5)  # weight 10
    s.send(CallEnters("b1", "b", priority=11), at=6)  # 11 > 0 + 10
    s.send(AgentLogin("y"), at=10)
    order = []
    for _ in range(3):
        call = s.of(OfferCall)[-1].call
        order.append(call)
        s.send(OfferAnswered("y", call))
        s.send(CallerHangup(call))
    assert order == ["b1", "c1", "a1"]


# -- rejects ---------------------------------------------------------------------------


def test_rejected_call_returns_to_the_head_with_its_enter_time() -> None:
    s = one_queue("linear", n=2)
    s.send(AgentLogin("a0"), at=0)
    for i, t in enumerate((10, 11, 12)):
        s.send(CallEnters(f"c{i}", "q", caller=f"55500{i}"), at=t)
    assert s.engine.agent_view("a0").call == "c0"
    s.send(OfferRejected("a0", "c0"), at=15)
    assert s.engine.call_view("c0").position == 1
    assert s.engine.call_view("c0").enter_time == 10
    s.send(AgentLogin("a1"), at=16)  # a1 takes the head: c0 (a0 took c1 meanwhile)
    assert s.engine.agent_view("a1").call == "c0"
    s.send(OfferAnswered("a1", "c0", leg="L"), at=17)
    assert s.qlog("ENTERQUEUE", "CONNECT")[-1] == "1700000017|c0|q|a1|CONNECT|7|L|1"
    assert len(s.qlog("ENTERQUEUE")) == 3  # no second ENTERQUEUE for c0


def test_wrapup_done_picks_next_caller_across_queues() -> None:
    queues = {"a": {"wrapup_s": 100}, "b": {"wrapup_s": 100}}
    s = Sim(config(queues, {"x": {"queues": {"a": 1, "b": 1}}}, NO_RECONCILE))
    s.send(AgentLogin("x"))
    s.send(CallEnters("first", "a"), at=0)
    s.send(OfferAnswered("x", "first"))
    s.send(CallEnters("b1", "b"), at=1)
    s.send(CallEnters("a1", "a"), at=2)
    s.send(CallerHangup("first"), at=5)
    s.send(WrapUpDone("x"), at=8)
    assert s.of(OfferCall)[-1].call == "b1"
