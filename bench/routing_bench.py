#!/usr/bin/env python3
"""ACD engine benchmark (prints figures; not a timed test).

1. Routing: 10,000 agents in 1,000 queues with mixed skills, strategies, widening and
   weights (:func:`acd.engine.bench_support.bench_routing`): CPU time of the thread per
   routing decision (an ``Engine.handle``/``handle_timer`` call that produced an
   ``OfferCall``: median, p90, p99) and engine inputs per second of engine time.
2. Memory per waiting call: the same configuration with nobody logged in, ``--backlog``
   callers entering (spread over the queues; no timer fires), measured with tracemalloc
   (everything the engine keeps for a call: the call, its queue entries, timers, ids) and
   divided by the number of calls.
3. The simulator (:mod:`acd.simulate`): simulated calls per second of wall time, for the
   Erlang reference queue (1,000 calls/h, AHT 120 s, 40 agents) and for the large
   configuration of (1) at 85 % load.

Target: a routing decision in at most 100 µs (median).

    .venv/bin/python bench/routing_bench.py [--calls 100000] [--backlog 100000] [--sim-hours 50]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acd.engine.bench_support import bench_routing, build_config  # noqa: E402
from acd.engine.engine import Engine  # noqa: E402
from acd.engine.events import CallEnters  # noqa: E402
from acd.simulate import SimParams, simulate  # noqa: E402

TARGET_DECISION_US = 100.0


def routing(agents: int, queues: int, calls: int, occupancies: list[float]) -> None:
    print(f"\n1. routing: {agents:,} agents in {queues:,} queues, {calls:,} calls "
          "(CPU time of the thread per engine input)")
    for occ in occupancies:
        t0 = time.perf_counter()
        r = bench_routing(agents, queues, calls, occupancy=occ)
        wall = time.perf_counter() - t0
        verdict = "ok" if r.median_decision_us <= TARGET_DECISION_US else "OVER TARGET"
        print(f"  occupancy {occ:.2f}: {r.decisions:,} decisions: median {r.median_decision_us:.1f} µs,"
              f" p90 {r.p90_decision_us:.1f} µs, p99 {r.p99_decision_us:.1f} µs "
              f"(target ≤ {TARGET_DECISION_US:g} µs median: {verdict})")
        print(f"    {r.events:,} engine inputs, median {r.median_event_us:.1f} µs, "
              f"{r.events_per_s:,.0f} inputs per second of engine time; run {wall:.1f} s wall")
        print("    outcomes: " + ", ".join(f"{k} {v:,}" for k, v in r.outcomes))


def memory(agents: int, queues: int, backlog: int) -> None:
    print(f"\n2. memory per waiting call: {backlog:,} callers waiting in {queues:,} queues "
          f"({agents:,} agents configured, none logged in)")
    cfg = build_config(agents, queues)
    names = list(cfg.queues)
    for label, spread in (("spread over the queues", names), ("all in one queue", names[1:2])):
        engine = Engine(cfg)
        engine.handle_timer(0.0)
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        for i in range(backlog):
            engine.handle(CallEnters(f"c{i}", spread[i % len(spread)], caller=f"+1555{i:07d}"),
                          i * 1e-4)  # within 10 s: no widening timer fires
            engine.actions()  # the server would carry them out; not kept
        gc.collect()
        used, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        waiting = sum(q.waiting() for q in engine.queues.values())
        assert waiting == backlog, waiting
        print(f"  {label:<24} {(used - base) / backlog:7.0f} bytes per call "
              f"({(used - base) / 2**20:.1f} MiB for {waiting:,}; peak {(peak - base) / 2**20:.1f} MiB)")
        del engine


def simulator(hours: float, agents: int, queues: int) -> None:
    print("\n3. simulator speed (wall time)")
    runs = [("Erlang reference: 1,000 calls/h, AHT 120 s, 40 agents",
             SimParams(1000, 120, 40, hours=hours, seed=1), None)]
    big = build_config(agents, queues)
    rate = 0.85 * agents * 3600 / 120  # 85 % of the agents' capacity at AHT 120 s
    runs.append((f"{agents:,} agents in {queues:,} queues, {rate:,.0f} calls/h, AHT 120 s",
                 SimParams(rate, 120, hours=max(0.25, hours / 200), seed=1, warmup_hours=0.05),
                 big))
    for label, params, cfg in runs:
        cpu0 = time.process_time()
        res = simulate(params, cfg)
        cpu = time.process_time() - cpu0
        f = res.figures
        print(f"  {label}: {res.calls_simulated:,} calls ({res.simulated_s / 3600:.2f} h) in "
              f"{res.wall_s:.1f} s: {res.calls_simulated / res.wall_s:,.0f} calls per wall second "
              f"({res.calls_simulated / cpu:,.0f} per CPU second; {res.engine_inputs:,} engine inputs)")
        print(f"    P(wait) {f['p_wait']:.4f}, ASA {f['asa_s']:.2f} s, occupancy {f['occupancy']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--queues", type=int, default=1_000)
    ap.add_argument("--calls", type=int, default=100_000, help="calls of the routing load")
    ap.add_argument("--occupancy", default="0.9,0.98", help="comma-separated loads to route at")
    ap.add_argument("--backlog", type=int, default=100_000, help="waiting calls for the memory figure")
    ap.add_argument("--sim-hours", type=float, default=50.0, help="hours of the simulator run")
    ap.add_argument("--only", choices=["routing", "memory", "simulator"])
    args = ap.parse_args()
    if args.only in (None, "routing"):
        routing(args.agents, args.queues, args.calls, [float(x) for x in args.occupancy.split(",")])
    if args.only in (None, "memory"):
        memory(args.agents, args.queues, args.backlog)
    if args.only in (None, "simulator"):
        simulator(args.sim_hours, args.agents, args.queues)
    return 0


if __name__ == "__main__":
    sys.exit(main())
