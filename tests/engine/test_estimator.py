"""The wait estimator: formula, learning, and the accuracy report."""

from __future__ import annotations

import random

import pytest

from acd.engine.estimator import Estimate, WaitEstimator, ewt_accuracy, position_bucket
from acd.engine.records import CallRecord


def test_formula() -> None:
    est = WaitEstimator(120.0)
    assert est.estimate("q", 1, staffed=4, available=2) == Estimate(0.0, 0.0, -1)  # idle agent
    assert est.estimate("q", 3, staffed=4, available=0) == Estimate(90.0, 90.0, 3)  # 3 x 120 / 4
    assert est.estimate("q", 5, staffed=4, available=2).ewt_s == 90.0  # k = 3
    assert est.estimate("q", 1, staffed=0, available=0).ewt_s is None  # nobody staffed


def test_aht_mean_then_ewma() -> None:
    est = WaitEstimator(180.0)
    for h in (100, 200, 300):
        est.observe_handle("q", h)
    assert est.aht("q") == pytest.approx(200.0)  # plain mean for the first calls
    for _ in range(200):
        est.observe_handle("q", 50)
    assert est.aht("q") == pytest.approx(50.0, abs=0.1)


def test_ratio_corrects_a_biased_model_per_bucket() -> None:
    est = WaitEstimator(100.0)
    model = est.estimate("q", 2, staffed=1, available=0)  # 200 s
    for _ in range(9):
        est.observe_wait("q", model, 100.0)  # callers ahead abandon: waits are half
    assert est.estimate("q", 2, 1, 0).ewt_s == 200.0  # not enough samples yet
    est.observe_wait("q", model, 100.0)
    assert est.estimate("q", 2, 1, 0).ewt_s == pytest.approx(100.0)
    assert est.estimate("q", 1, 1, 0).ewt_s == 100.0  # bucket k=1 untouched
    assert position_bucket(1) == 0 and position_bucket(4) == position_bucket(5) == 3
    assert position_bucket(21) == position_bucket(500) == 6


def test_estimate_in_a_simulated_mm_n_queue_is_close() -> None:
    """k-th in line with N busy exponential servers waits k·AHT/N on average."""
    rng = random.Random(5)
    n, aht, k = 5, 100.0, 4
    waits = []
    for _ in range(20_000):
        # time until the k-th release among N busy servers (memoryless)
        waits.append(sum(rng.expovariate(n / aht) for _ in range(k)))
    mean = sum(waits) / len(waits)
    assert WaitEstimator(aht).estimate("q", k, n, 0).ewt_s == pytest.approx(mean, rel=0.03)


def rec(first_queue: str, ewt: float | None, wait: float, answered: bool = True,
        test: bool = False) -> CallRecord:
    return CallRecord("c", "", first_queue, first_queue, 0.0, wait if answered else None, 100.0,
                      "a", wait, 10.0, "answered" if answered else "abandoned", "", ewt, True,
                      1, 0, test=test)


def test_accuracy_report() -> None:
    records = [rec("a", 60.0, 50.0), rec("a", 60.0, 100.0), rec("b", 0.0, 5.0),
               rec("b", 30.0, 0.0, answered=False), rec("b", None, 10.0),
               rec("b", 10.0, 500.0, test=True)]
    r = ewt_accuracy(records)
    assert set(r) == {"", "a", "b"}
    assert (r["a"].calls, r["a"].bias_s, r["a"].mae_s) == (2, -15.0, 25.0)
    assert r["a"].within_30s == 0.5 and r["a"].within_25pct == 0.5
    assert r[""].calls == 3
    assert ewt_accuracy(records, include_test=True)["b"].calls == 2
