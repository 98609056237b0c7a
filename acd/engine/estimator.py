"""Estimated wait time (EWT) for a caller at a given queue position.

Model (position-based, self-correcting)::

    k      = position − A            callers ahead of the available agents (A idle members)
    EWT₀   = 0                       if k ≤ 0 (an idle agent takes the call now)
    EWT₀   = k · AHT / N             otherwise
    EWT    = EWT₀ · r[b(k)]          once bucket b(k) has ≥ min_samples observations

- ``N`` is the number of staffed members of the queue (logged in and not on break,
  able to serve it at some level) and ``AHT`` the queue's average handle time (talk +
  wrap-up), an exponentially weighted moving average (α = 0.1, plain mean for the first 10
  calls; ``aht_default_s`` before any call).
- Why ``k · AHT / N``: when all N agents are busy and handle times are exponential, agents
  free up as a Poisson process of rate N / AHT, so the k-th release comes after k · AHT / N
  on average (the M/M/N conditional wait of the k-th caller in line).
- ``r[b]`` corrects what the model ignores: callers ahead who abandon (shorter waits),
  agents shared with other queues or going on break (longer), non-exponential handle times.
  It is an EWMA (α = 0.1) of ``actual wait / EWT₀`` over answered calls, kept per queue and
  per bucket of ``k`` (1, 2, 3, 4–5, 6–10, 11–20, 21+), clamped to [0.25, 4].

Assumptions and limits: calls are served in order (priorities and skills make a given caller
wait longer or shorter); only answered calls feed ``r`` (abandoned ones are censored: a mild
optimism when abandonment is high); a queue with nobody staffed has no estimate (None).

Every ``CallRecord`` carries the estimate made at entry (``ewt_at_entry_s``) and the actual
``wait_s``; :func:`ewt_accuracy` turns a run's records into the estimator's error report
(the simulator prints it).
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

from acd.engine.records import CallRecord

__all__ = ["WaitEstimator", "Estimate", "AccuracyReport", "ewt_accuracy", "position_bucket"]

log = logging.getLogger(__name__)

BUCKET_BOUNDS = (1, 2, 3, 5, 10, 20)  # upper bounds of k per bucket; beyond: last bucket
RATIO_MIN, RATIO_MAX = 0.25, 4.0


def position_bucket(k: int) -> int:
    """Index of the bucket of ``k`` (callers ahead of the idle agents, k ≥ 1)."""
    return bisect_left(BUCKET_BOUNDS, k)


@dataclass(frozen=True)
class Estimate:
    """``ewt_s`` (None: nobody staffed), the uncorrected ``model_s`` and ``k``."""

    ewt_s: float | None
    model_s: float | None
    k: int


@dataclass
class _QueueStats:
    aht_s: float
    handled: int = 0
    ratio: list[float] = field(default_factory=lambda: [1.0] * (len(BUCKET_BOUNDS) + 1))
    samples: list[int] = field(default_factory=lambda: [0] * (len(BUCKET_BOUNDS) + 1))


class WaitEstimator:
    """Per-queue AHT and correction ratios; pure arithmetic, no clock."""

    def __init__(self, aht_default_s: float, *, alpha: float = 0.1, ratio_alpha: float = 0.1,
                 min_samples: int = 10) -> None:
        self.aht_default_s = aht_default_s
        self.alpha = alpha
        self.ratio_alpha = ratio_alpha
        self.min_samples = min_samples
        self._queues: dict[str, _QueueStats] = {}

    def _stats(self, queue: str) -> _QueueStats:
        st = self._queues.get(queue)
        if st is None:
            st = self._queues[queue] = _QueueStats(self.aht_default_s)
        return st

    def aht(self, queue: str) -> float:
        return self._stats(queue).aht_s

    def estimate(self, queue: str, position: int, staffed: int, available: int) -> Estimate:
        """EWT of the caller at ``position`` (1 = next) given the queue's staffing now."""
        k = position - available
        if k <= 0:
            return Estimate(0.0, 0.0, k)
        if staffed <= 0:
            return Estimate(None, None, k)
        st = self._stats(queue)
        model = k * st.aht_s / staffed
        b = position_bucket(k)
        ratio = st.ratio[b] if st.samples[b] >= self.min_samples else 1.0
        return Estimate(model * ratio, model, k)

    def observe_handle(self, queue: str, handle_s: float) -> None:
        """A call's handle time (answer to end of wrap-up)."""
        if handle_s < 0:
            return
        st = self._stats(queue)
        st.handled += 1
        a = max(self.alpha, 1.0 / st.handled)
        st.aht_s += a * (handle_s - st.aht_s)

    def observe_wait(self, queue: str, estimate: Estimate, actual_s: float) -> None:
        """An answered call's actual wait against the model made at its entry."""
        if estimate.model_s is None or estimate.model_s <= 0 or estimate.k <= 0:
            return
        st = self._stats(queue)
        b = position_bucket(estimate.k)
        st.samples[b] += 1
        a = max(self.ratio_alpha, 1.0 / st.samples[b])
        sample = min(RATIO_MAX, max(RATIO_MIN, actual_s / estimate.model_s))
        st.ratio[b] += a * (sample - st.ratio[b])
        log.debug("ewt %s: k=%d model %.1fs actual %.1fs ratio[%d]=%.2f",
                  queue, estimate.k, estimate.model_s, actual_s, b, st.ratio[b])

    def snapshot(self, queue: str) -> dict[str, object]:
        """The queue's figures for status pages and the simulator's report."""
        st = self._stats(queue)
        return {"aht_s": st.aht_s, "handled": st.handled, "ratio": tuple(st.ratio),
                "samples": tuple(st.samples)}


@dataclass(frozen=True)
class AccuracyReport:
    """EWT at entry against the actual wait, over the answered calls of a queue.

    ``bias_s`` is the mean of (estimate − actual): negative means callers were promised too
    short a wait. ``within_25pct`` counts an estimate as good when its error is at most 25 %
    of the actual wait or 10 s, whichever is larger.
    """

    queue: str
    calls: int
    bias_s: float
    mae_s: float
    rmse_s: float
    within_30s: float
    within_25pct: float


def ewt_accuracy(records: Iterable[CallRecord], *, include_test: bool = False
                 ) -> dict[str, AccuracyReport]:
    """Error of the entry estimates per first queue, and over all queues (key ``""``).

    Only answered calls that had an estimate count; a callback's wait includes the time
    before the call-back, so callbacks are left out, and test calls unless asked for.
    """
    errors: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if r.answered_at is None or r.ewt_at_entry_s is None or r.callback:
            continue
        if r.test and not include_test:
            continue
        pair = (r.ewt_at_entry_s - r.wait_s, r.wait_s)
        errors.setdefault(r.first_queue, []).append(pair)
        errors.setdefault("", []).append(pair)
    return {q: _report(q, pairs) for q, pairs in sorted(errors.items())}


def _report(queue: str, pairs: list[tuple[float, float]]) -> AccuracyReport:
    n = len(pairs)
    errs = [e for e, _ in pairs]
    return AccuracyReport(
        queue=queue,
        calls=n,
        bias_s=sum(errs) / n,
        mae_s=sum(abs(e) for e in errs) / n,
        rmse_s=math.sqrt(sum(e * e for e in errs) / n),
        within_30s=sum(abs(e) <= 30.0 for e in errs) / n,
        within_25pct=sum(abs(e) <= max(10.0, 0.25 * w) for e, w in pairs) / n,
    )
