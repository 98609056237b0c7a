"""Staffing mathematics against published reference figures and an independent simulation."""

from __future__ import annotations

import heapq
import math
import random

import pytest

from acd.erlang import agents_for_service_level, erlang_a, erlang_b, erlang_c


def test_erlang_c_reference_figures() -> None:
    # 1,000 calls/h, AHT 120 s, 40 agents (33.3 Erlang): the field notes' reference
    r = erlang_c(1000, 120, 40, target_s=20)
    assert r.p_wait == pytest.approx(0.1907, abs=5e-4)
    assert r.asa_s == pytest.approx(3.43, abs=5e-3)
    assert r.service_level == pytest.approx(0.937, abs=1e-3)
    assert r.occupancy == pytest.approx(33.333 / 40, rel=1e-4)


def test_erlang_b_textbook_value() -> None:
    assert erlang_b(10, 5.0) == pytest.approx(0.018384, abs=1e-6)  # standard table value


def test_overload_is_reported_not_divided_by_zero() -> None:
    r = erlang_c(1000, 180, 40)  # 50 Erlang on 40 agents
    assert r.p_wait == 1.0 and math.isinf(r.asa_s) and r.service_level == 0.0


def test_erlang_a_tends_to_erlang_c_with_infinite_patience() -> None:
    c, a = erlang_c(1000, 120, 40), erlang_a(1000, 120, 40, patience_s=1e9)
    assert a.p_wait == pytest.approx(c.p_wait, rel=1e-4)
    assert a.asa_s == pytest.approx(c.asa_s, rel=1e-4)
    assert a.service_level == pytest.approx(c.service_level, rel=1e-4)
    assert a.abandon_rate < 1e-6


def test_erlang_a_monotone_in_patience_and_agents() -> None:
    impatient, patient = erlang_a(1000, 120, 34, 30), erlang_a(1000, 120, 34, 300)
    assert impatient.abandon_rate > patient.abandon_rate
    assert erlang_a(1000, 120, 36, 60).abandon_rate < erlang_a(1000, 120, 34, 60).abandon_rate


def simulate_mmnm(calls_per_hour: float, aht: float, agents: int, patience: float, calls: int,
                  seed: int = 7) -> dict[str, float]:
    """An independent event simulation of M/M/N+M (FIFO), written separately from acd.erlang."""
    rng = random.Random(seed)
    lam = calls_per_hour / 3600
    t, free, queue = 0.0, agents, []  # queue of (arrival, give_up_time)
    done: list[tuple[float, str, int]] = []  # event heap: (time, kind, id)
    waits, abandoned, waited = [], 0, 0
    arrivals = 0
    next_arrival = rng.expovariate(lam)
    while arrivals < calls or done:
        if arrivals < calls and (not done or next_arrival < done[0][0]):
            t = next_arrival
            arrivals += 1
            next_arrival = t + rng.expovariate(lam)
            if free:
                free -= 1
                waits.append(0.0)
                heapq.heappush(done, (t + rng.expovariate(1 / aht), "end", 0))
            else:
                waited += 1
                queue.append((t, t + rng.expovariate(1 / patience)))
            continue
        t, _, _ = heapq.heappop(done)
        free += 1
        while queue and free:
            arrived, give_up = queue.pop(0)
            if give_up <= t:
                abandoned += 1
                continue
            free -= 1
            waits.append(t - arrived)
            heapq.heappush(done, (t + rng.expovariate(1 / aht), "end", 0))
    abandoned += len(queue)
    return {"p_wait": waited / calls, "asa": sum(waits) / len(waits), "abandon": abandoned / calls,
            "sl": sum(1 for w in waits if w <= 20) / calls}


def test_erlang_a_agrees_with_an_independent_simulation() -> None:
    model = erlang_a(1000, 120, 34, patience_s=60)
    sim = simulate_mmnm(1000, 120, 34, 60, calls=60000)
    assert sim["p_wait"] == pytest.approx(model.p_wait, rel=0.1)
    assert sim["abandon"] == pytest.approx(model.abandon_rate, rel=0.15)
    assert sim["asa"] == pytest.approx(model.asa_s, rel=0.15)
    assert sim["sl"] == pytest.approx(model.service_level, abs=0.03)


def test_inverse_finds_the_fewest_agents() -> None:
    r = agents_for_service_level(1000, 120, 0.8, target_s=20)
    assert r.service_level >= 0.8
    assert erlang_c(1000, 120, r.agents - 1, 20).service_level < 0.8
    ra = agents_for_service_level(1000, 120, 0.8, target_s=20, patience_s=60)
    assert ra.agents <= r.agents  # abandonment relieves the queue
    with pytest.raises(ValueError):
        agents_for_service_level(1000, 120, 1.5)


def test_cli_json_and_inverse() -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "acd.cli", "erlang", "--calls-per-hour", "1000", "--aht", "120",
                          "--agents", "40", "--json"], capture_output=True, text=True)
    data = json.loads(out.stdout)
    assert data["p_wait"] == pytest.approx(0.1907, abs=5e-4) and data["asa_s"] == pytest.approx(3.43, abs=5e-3)
    assert {"p_wait", "asa_s", "service_level", "occupancy"} <= data.keys()
    inv = subprocess.run([sys.executable, "-m", "acd.cli", "erlang", "--calls-per-hour", "1000", "--aht", "120",
                          "--service-level", "0.8", "--json"], capture_output=True, text=True)
    assert json.loads(inv.stdout)["agents"] == agents_for_service_level(1000, 120, 0.8).agents
    bad = subprocess.run([sys.executable, "-m", "acd.cli", "erlang", "--calls-per-hour", "0", "--aht", "120",
                          "--agents", "4"], capture_output=True, text=True)
    assert bad.returncode == 1 and "error:" in bad.stderr and "Traceback" not in bad.stderr
