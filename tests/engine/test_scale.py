"""10,000 agents in 1,000 queues: routing still correct (not timed here; see bench_support)."""

from __future__ import annotations

import random

from acd.engine.actions import OfferCall
from acd.engine.bench_support import bench_routing, build_config
from acd.engine.engine import Engine
from acd.engine.events import AgentHangup, AgentLogin, CallEnters, OfferAnswered, WrapUpDone


def brute_force_best(engine: Engine, agent_id: str) -> str | None:
    """The call the agent should take next, by scanning every waiting call of its queues."""
    agent = engine.agents[agent_id]
    best = None
    for qname, level in agent.levels.items():
        for (tier, _skills), entries in engine.queues[qname].tiers.items():
            for e in entries:
                if tier <= level and (best is None or e < best):
                    best = e
    return None if best is None else best[4].id


def test_ten_thousand_agents_thousand_queues() -> None:
    cfg = build_config(10_000, 1_000, seed=3)
    engine = Engine(cfg, rng=random.Random(3))
    rng = random.Random(3)
    for aid in list(cfg.agents)[:6_000]:  # 4,000 stay logged out: some queues get busy
        engine.handle(AgentLogin(aid), 0.0)
    engine.actions()
    engine.check_invariants()
    now = 1.0
    connected: dict[str, str] = {}
    offered_to: dict[str, set[str]] = {}
    queue_of: dict[str, str] = {}
    for i in range(8_000):
        now += 0.01
        q = f"q{rng.randrange(1_000)}"
        call = f"c{i}"
        queue_of[call] = q
        engine.handle(CallEnters(call, q), now)
        for a in engine.actions():
            if isinstance(a, OfferCall):
                offered_to.setdefault(a.call, set()).add(a.agent)
                assert a.queue == queue_of[a.call]
                assert cfg.agents[a.agent].level_in(cfg.queues[a.queue]) > 0
                if a.call not in connected:
                    engine.handle(OfferAnswered(a.agent, a.call), now)
                    connected[a.call] = a.agent
        engine.actions()
        if i % 4 == 0 and connected:  # a quarter of the time, somebody finishes a call
            done = next(iter(connected))
            agent = connected.pop(done)
            engine.handle(AgentHangup(agent, done), now)
            expected = brute_force_best(engine, agent)
            engine.handle(WrapUpDone(agent), now)
            offers = [a for a in engine.actions() if isinstance(a, OfferCall)]
            assert [a.call for a in offers][:1] == ([expected] if expected else [])
            for a in offers:
                if isinstance(a, OfferCall):
                    # the freed agent takes the best waiting call across all its queues
                    assert a.agent == agent
                    engine.handle(OfferAnswered(a.agent, a.call), now)
                    connected[a.call] = a.agent
            engine.actions()
    engine.check_invariants()
    waiting = sum(q.waiting() for q in engine.queues.values())
    busy = sum(a.state == "on-call" for a in engine.agents.values())
    assert busy == len(connected) > 4_000
    assert waiting > 0  # some queues are saturated, and invariants say nobody could take them


def test_bench_routing_runs() -> None:
    result = bench_routing(n_agents=300, n_queues=30, n_calls=500)
    assert result.decisions > 400
    assert dict(result.outcomes).get("answered", 0) > 400
    assert result.median_decision_us > 0
