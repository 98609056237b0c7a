"""The simulator on the real engine against Erlang C and A, its figures, and its CLI."""

from __future__ import annotations

import heapq
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from acd.config import load_config
from acd.engine.records import CallRecord
from acd.erlang import erlang_a, erlang_c
from acd.simulate import SimParams, SimulationError, simulate

ROOT = Path(__file__).resolve().parent.parent

# Erlang C reference (1,000 calls/h, AHT 120 s, 40 agents): P(wait) 0.1907, ASA 3.43 s.
# The ASA of a 40-agent queue at 83 % occupancy averages slowly: over seeds its relative
# spread is about 7 % at 200 simulated hours and 5-6 % at 700 h (P(wait): 4 % and 2.5 %).
# At 700 h seeds 1..10 gave P(wait) -2.6..+4.8 % and ASA -5.8..+11.9 % (seeds 2 and 4 beyond
# 10 %); ±10 % for any seed at 3 sigma would need 1,600-2,000 h, two minutes of CPU or more.
# 700 h (about 60 s under pytest, 12,000 calls/s) is the largest run the test budget allows.
# The run is deterministic, and the engine reproduces a FIFO M/M/N call by call (test below),
# so seed 1's figures move only if the engine's queueing or the simulator's streams change.
VALIDATION_HOURS = 700.0
VALIDATION_SEED = 1


def run(**kw: object) -> dict[str, object]:
    params = {"calls_per_hour": 1000.0, "aht_s": 120.0, "agents": 40, "hours": 4.0, "seed": 3}
    params.update(kw)
    return simulate(SimParams(**params)).as_dict()  # type: ignore[arg-type]


def test_no_abandonment_matches_erlang_c() -> None:
    res = simulate(SimParams(1000, 120, 40, hours=VALIDATION_HOURS, seed=VALIDATION_SEED))
    f = res.figures
    model = erlang_c(1000, 120, 40)
    assert model.p_wait == pytest.approx(0.1907, abs=5e-4) and model.asa_s == pytest.approx(3.43, abs=5e-3)
    assert f["p_wait"] == pytest.approx(model.p_wait, rel=0.10)
    assert f["asa_s"] == pytest.approx(model.asa_s, rel=0.10)
    assert f["service_level"] == pytest.approx(model.service_level, abs=0.01)
    assert f["occupancy"] == pytest.approx(model.occupancy, rel=0.01)
    assert f["abandon_rate"] == 0.0 and f["handled"] == f["offered"]
    assert f["offered"] == pytest.approx(1000 * (VALIDATION_HOURS - 1), rel=0.01)  # 1 h warm-up
    assert f["mean_talk_s"] == pytest.approx(120, rel=0.01)
    assert res.prediction is not None and res.prediction.model == "erlang-c"
    assert res.relative_difference["asa_s"] == pytest.approx(f["asa_s"] / model.asa_s - 1)


def fifo_reference(records: list[CallRecord], agents: int) -> int:
    """Replay the calls' arrival and talk times through a plain FIFO N-server queue (written
    apart from the engine) and check every call's fate against the engine's; returns the
    number of calls that waited. An abandoned caller must have found no server free before
    giving up and takes none; an answered one starts when the earliest server frees up."""
    free = [0.0] * agents  # heap of the times the servers free up
    waited = 0
    for r in sorted(records, key=lambda r: r.entered_at):
        start = max(r.entered_at, free[0])
        if r.outcome == "abandoned":
            assert start >= r.entered_at + r.wait_s - 1e-6, r
            continue
        assert r.outcome == "answered", r
        assert r.wait_s == pytest.approx(start - r.entered_at, abs=1e-6), r
        heapq.heapreplace(free, start + r.talk_s)
        waited += r.wait_s > 0
    return waited


@pytest.mark.parametrize("agents, patience", [(40, None), (34, 90.0)])
def test_engine_is_a_fifo_queue_call_by_call(agents: int, patience: float | None) -> None:
    """Independent of sampling noise: the engine gives every call exactly the wait a FIFO
    M/M/N(+M) queue gives it for the same arrival, talk and patience times."""
    records: list[CallRecord] = []
    res = simulate(SimParams(1000, 120, agents, hours=20, seed=11, patience_s=patience,
                             warmup_hours=0), on_call=records.append)
    assert len(records) == res.figures["offered"] > 19_000
    waited = fifo_reference(records, agents)
    assert waited > 2000 and (res.figures["abandoned"] > 500) == (patience is not None)


def test_abandonment_matches_erlang_a() -> None:
    # 32 agents for 33.3 Erlang: stable only because callers give up (mean patience 60 s)
    # at 60 h: abandonment -6.0..+4.6 % over seeds 1..30; P(wait) -4.5..+1.6 % and ASA
    # -8.2..+3.0 % over seeds 1..10
    res = simulate(SimParams(1000, 120, 32, hours=60, seed=1, patience_s=60))
    f = res.figures
    model = erlang_a(1000, 120, 32, 60)
    assert model.abandon_rate == pytest.approx(0.1026, abs=1e-3)
    assert f["abandon_rate"] == pytest.approx(model.abandon_rate, rel=0.10)
    assert f["p_wait"] == pytest.approx(model.p_wait, rel=0.08)
    assert f["asa_s"] == pytest.approx(model.asa_s, rel=0.15)
    assert f["occupancy"] == pytest.approx(model.occupancy, rel=0.02)
    assert f["offered"] == f["handled"] + f["abandoned"]
    assert res.prediction is not None and res.prediction.model == "erlang-a"


def test_ewt_error_is_reported_and_finite() -> None:
    f = run(hours=6.0, patience_s=200.0, agents=36)
    for key in ("ewt", "ewt_queued"):
        e = f[key]
        assert isinstance(e, dict) and e["calls"] > 100
        for name in ("bias_s", "mae_s", "rmse_s"):
            assert math.isfinite(e[name])
        assert 0.0 <= e["within_30s"] <= 1.0 and e["mae_s"] >= abs(e["bias_s"])
    assert f["ewt"]["calls"] == f["handled"]  # type: ignore[index]
    assert f["actions"]["Announce"] > 0 and f["actions"]["StartMusic"] > 0  # type: ignore[index]


def test_deterministic_for_a_seed() -> None:
    a, b = run(patience_s=90.0), run(patience_s=90.0)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert run(patience_s=90.0, seed=4) != a


def test_warmup_and_definitions() -> None:
    f = run(hours=5.0, warmup_hours=2.0, target_s=0.0)
    assert f["params"]["warmup_hours"] == 2.0  # type: ignore[index]
    assert f["offered"] == pytest.approx(3000, rel=0.1)
    # target 0 s: only the calls that did not wait at all count as answered in time
    assert f["service_level"] == pytest.approx(1 - f["p_wait"])  # type: ignore[operator]
    assert run(hours=5.0)["params"]["warmup_hours"] == 0.5  # type: ignore[index]
    assert run(hours=20.0, seed=1)["params"]["warmup_hours"] == 1.0  # type: ignore[index]


def test_wrapup_and_ring_delay_keep_agents_busy() -> None:
    f = run(wrapup_s=30.0, ring_delay_s=3.0, agents=50, hours=6.0)
    model = erlang_c(1000, 153, 50)  # ring + talk + wrap-up
    assert f["occupancy"] == pytest.approx(model.occupancy, rel=0.03)
    assert f["prediction"]["aht_s"] == 153  # type: ignore[index]
    assert f["asa_s"] >= 3.0  # type: ignore[operator]  # the ring counts in the wait
    assert f["outcomes"] == {"answered": f["offered"]}


def test_overload_ends_with_unfinished_calls() -> None:
    f = run(agents=20, hours=2.0)  # 33.3 Erlang on 20 agents, nobody gives up
    assert f["outcomes"]["unfinished"] > 0  # type: ignore[index]
    assert f["prediction"]["asa_s"] is None  # infinite for Erlang C, null in JSON  # type: ignore[index]
    json.dumps(f, allow_nan=False)


def test_config_queues_and_agents(tmp_path: Path) -> None:
    cfg = tmp_path / "cc.toml"
    cfg.write_text(
        '[queues.sales]\nwrapup_s = 5\n[queues.support]\nstrategy = "fewest-calls"\n'
        '[queues.unused]\n'
        + "".join(f'[agents.a{i}]\nqueues = {{sales = {1 + i % 3}, support = 1}}\n' for i in range(12))
        + "".join(f'[agents.b{i}]\nqueues = {{support = 2}}\n' for i in range(8))
        + '[agents.idle]\nname = "in no queue"\n')
    res = simulate(SimParams(400, 180, hours=4.0, seed=2, config=str(cfg)), load_config(cfg).engine)
    f = res.figures
    assert res.params["queues"] == ["sales", "support"] and res.params["agents"] == 20
    assert f["offered"] > 1000 and f["handled"] == f["offered"]
    assert "pools them" in res.prediction_note
    with pytest.raises(SimulationError, match="--agents does not apply"):
        simulate(SimParams(400, 180, agents=3, hours=4.0, config=str(cfg)), load_config(cfg).engine)
    with pytest.raises(SimulationError, match="ring-delay"):
        simulate(SimParams(400, 180, hours=4.0, ring_delay_s=25.0), load_config(cfg).engine)


@pytest.mark.parametrize("bad, message", [
    (dict(agents=0), "--agents must be at least 1"),
    (dict(agents=None), "give --agents"),
    (dict(hours=0.0), "--hours must be positive"),
    (dict(hours=2.0, warmup_hours=2.0), "--warmup-hours"),
    (dict(patience_s=-1.0), "--patience"),
    (dict(calls_per_hour=math.nan), "finite"),
    (dict(calls_per_hour=1e6, hours=1e3), "too large"),
])
def test_bad_parameters(bad: dict[str, object], message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        run(**bad)


def acd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acd.cli", "simulate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_json() -> None:
    p = acd("--calls-per-hour", "1000", "--aht", "120", "--agents", "40", "--hours", "3",
            "--seed", "7", "--patience", "120", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("p_wait", "asa_s", "service_level", "abandon_rate", "occupancy", "offered",
                "handled", "ewt", "prediction", "relative_difference", "ci95"):
        assert key in out
    assert out["prediction"]["model"] == "erlang-a" and out["params"]["seed"] == 7


def test_cli_table() -> None:
    p = acd("--calls-per-hour", "600", "--aht", "100", "--agents", "20", "--hours", "2",
            "--seed", "1", "--wrapup", "10")
    assert p.returncode == 0, p.stderr
    assert "Erlang C" in p.stdout and "P(wait)" in p.stdout and "EWT at entry" in p.stdout


@pytest.mark.parametrize("args, message", [
    (("--agents", "0"), "--agents must be at least 1"),
    (("--agents", "x"), "invalid int value"),
    (("--agents", "5", "--config", "/nonexistent.toml"), "no such file"),
    ((), "give --agents"),
])
def test_cli_bad_arguments_exit_1(args: tuple[str, ...], message: str) -> None:
    p = acd("--calls-per-hour", "100", "--aht", "60", "--hours", "1", "--seed", "1", *args)
    assert p.returncode == 1
    assert message in p.stderr and "Traceback" not in p.stderr and not p.stdout
