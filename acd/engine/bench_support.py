"""A routing benchmark on a large synthetic contact center (virtual time, no I/O).

:func:`build_config` makes ``n_agents`` agents in ``n_queues`` queues: every agent serves
1 to 5 queues at levels 1..5, queues mix the strategies, a third of them widen skills
(level 3 → 2 after 20 s → 1 after 40 s), some carry a weight. :func:`bench_routing` drives
a steady load near the given occupancy: Poisson arrivals, answers after 0.5–3 s, talk times
exponential around ``aht_s``, wrap-ups by timer or by "done", a few rejects and ring
timeouts, caller abandons. Every ``Engine.handle``/``handle_timer`` call is timed in CPU
time of the thread (``time.thread_time_ns``: other processes on a busy machine do not
count; the garbage collector does); a *routing decision* is a call that produced at least
one ``OfferCall``. Long-lived objects (configuration, agents) are frozen out of the
collector after set-up (``gc.freeze``), as the server should do after loading its config.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import random
import statistics
import time
from dataclasses import dataclass
from types import MappingProxyType

from acd.engine.actions import OfferCall
from acd.engine.config import AgentConfig, EngineConfig, QueueConfig, WideningStep
from acd.engine.engine import Engine
from acd.engine.events import (
    AgentHangup,
    AgentLogin,
    CallEnters,
    CallerHangup,
    Event,
    OfferAnswered,
    OfferRejected,
    WrapUpDone,
)
from acd.engine.records import CallRecord

__all__ = ["build_config", "bench_routing", "BenchResult"]

log = logging.getLogger(__name__)

STRATEGIES = ("longest-idle", "longest-idle", "fewest-calls", "least-talk-time", "rrmemory",
              "linear", "random", "ring-all")


@dataclass(frozen=True)
class BenchResult:
    agents: int
    queues: int
    calls: int
    decisions: int  # handle() calls that produced at least one offer
    median_decision_us: float
    p90_decision_us: float
    p99_decision_us: float
    median_event_us: float
    events: int
    events_per_s: float  # engine inputs (events and timer firings) per second of engine time
    outcomes: tuple[tuple[str, int], ...]  # CallRecord outcomes


def build_config(n_agents: int = 10_000, n_queues: int = 1_000, seed: int = 1) -> EngineConfig:
    rng = random.Random(seed)
    queues = []
    for i in range(n_queues):
        widening: tuple[WideningStep, ...] = ()
        min_level = 1
        if i % 3 == 0:
            min_level = 3
            widening = (WideningStep(20.0, 2), WideningStep(40.0, 1))
        queues.append(QueueConfig(
            f"q{i}", strategy=STRATEGIES[i % len(STRATEGIES)], wrapup_s=10.0,
            ring_timeout_s=15.0, min_level=min_level, skill_widening=widening,
            weight=(i % 5 == 0) * 2, prefer_higher_level=i % 2 == 0))
    agents = []
    for i in range(n_agents):
        k = rng.randint(1, 5)
        members = {f"q{j}": rng.randint(1, 5) for j in rng.sample(range(n_queues), k)}
        agents.append(AgentConfig(f"a{i}", queues=MappingProxyType(members),
                                  test=i % 100 == 0))
    return EngineConfig.build(queues, agents, reconcile_after_s=0.0, no_answer_limit=3,
                              reject_delay_s=5.0)


def bench_routing(n_agents: int = 10_000, n_queues: int = 1_000, n_calls: int = 20_000, *,
                  occupancy: float = 0.9, aht_s: float = 120.0, seed: int = 1) -> BenchResult:
    """Run the load and return the timings (median µs per routing decision, events/s)."""
    cfg = build_config(n_agents, n_queues, seed)
    rng = random.Random(seed)
    engine = Engine(cfg, rng=random.Random(seed))
    queue_names = list(cfg.queues)
    rate = occupancy * n_agents / (aht_s + 10.0)  # arrivals per second
    decision_ns: list[int] = []
    event_ns: list[int] = []
    pending: list[tuple[float, int, Event]] = []
    n = itertools.count()
    outcomes: dict[str, int] = {}

    def at(t: float, ev: Event) -> None:
        heapq.heappush(pending, (t, next(n), ev))

    def run(now: float, ev: Event | None) -> None:
        t0 = time.thread_time_ns()
        if ev is None:
            engine.handle_timer(now)
        else:
            engine.handle(ev, now)
        dt = time.thread_time_ns() - t0
        event_ns.append(dt)
        acts = engine.actions()
        offered = False
        for a in acts:
            if type(a) is OfferCall:
                offered = True
                react(now, a)
            elif type(a) is CallRecord:
                outcomes[a.outcome] = outcomes.get(a.outcome, 0) + 1
        if offered:
            decision_ns.append(dt)

    def react(now: float, offer: OfferCall) -> None:
        r = rng.random()
        if r < 0.03:
            at(now + rng.uniform(0.5, 5), OfferRejected(offer.agent, offer.call))
        elif r < 0.05:
            return  # rings out
        else:
            answer = now + rng.uniform(0.5, 3.0)
            at(answer, OfferAnswered(offer.agent, offer.call, leg=f"L{offer.call}"))
            end = answer + rng.expovariate(1.0 / aht_s)
            at(end, AgentHangup(offer.agent, offer.call) if rng.random() < 0.5
               else CallerHangup(offer.call))
            if rng.random() < 0.5:
                at(end + rng.uniform(1, 9), WrapUpDone(offer.agent))

    gc.collect()
    gc.freeze()
    for aid in cfg.agents:
        run(0.0, AgentLogin(aid))
    t = 1.0
    for i in range(n_calls):
        t += rng.expovariate(rate)
        at(t, CallEnters(f"c{i}", rng.choice(queue_names), caller=f"555{i:06d}",
                         priority=5 if rng.random() < 0.05 else None))
        if rng.random() < 0.03:
            at(t + rng.uniform(5, 90), CallerHangup(f"c{i}"))
    while pending:
        when, _, ev = heapq.heappop(pending)
        while (deadline := engine.get_timer()) is not None and deadline < when:
            run(deadline, None)
        run(when, ev)
    while (deadline := engine.get_timer()) is not None:
        run(deadline, None)
    gc.unfreeze()
    total_s = sum(event_ns) / 1e9
    dec = sorted(decision_ns)
    result = BenchResult(
        agents=n_agents, queues=n_queues, calls=n_calls, decisions=len(dec),
        median_decision_us=statistics.median(dec) / 1000 if dec else 0.0,
        p90_decision_us=dec[int(0.9 * (len(dec) - 1))] / 1000 if dec else 0.0,
        p99_decision_us=dec[int(0.99 * (len(dec) - 1))] / 1000 if dec else 0.0,
        median_event_us=statistics.median(event_ns) / 1000,
        events=len(event_ns), events_per_s=len(event_ns) / total_s if total_s else 0.0,
        outcomes=tuple(sorted(outcomes.items())))
    log.info("bench: %s", result)
    return result
