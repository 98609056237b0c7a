"""Staffing mathematics: Erlang C (M/M/N) and Erlang A (M/M/N+M, callers with patience).

Erlang C uses the stable Erlang-B recurrence. Erlang A is solved exactly as a birth-death
chain (Palm's model: arrivals λ, service μ per agent, abandonment θ = 1/patience per waiting
caller) truncated where the tail is negligible; waits of a tagged caller follow from the
stages ahead of it (Mandelbaum & Zeltyn, "The M/M/n+G queue", 2007).

Definitions (all reported figures use them):
- ``p_wait``: probability that an arriving caller waits at all (PASTA);
- ``asa_s``: average speed of answer — mean wait of the callers who are answered;
- ``service_level``: fraction of offered calls answered within ``target_s``;
- ``abandon_rate``: fraction of offered calls that hang up before an answer;
- ``occupancy``: share of agent time busy with calls.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ErlangResult", "erlang_b", "erlang_c", "erlang_a", "agents_for_service_level"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErlangResult:
    model: str
    calls_per_hour: float
    aht_s: float
    agents: int
    offered_erlangs: float
    p_wait: float
    asa_s: float
    service_level: float
    target_s: float
    occupancy: float
    abandon_rate: float = 0.0
    patience_s: float | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def erlang_b(agents: int, erlangs: float) -> float:
    """Blocking probability, by the recurrence B(k) = A·B(k-1) / (k + A·B(k-1))."""
    b = 1.0
    for k in range(1, agents + 1):
        b = erlangs * b / (k + erlangs * b)
    return b


def _check(calls_per_hour: float, aht_s: float, agents: int) -> float:
    if calls_per_hour <= 0 or aht_s <= 0 or agents < 1:
        raise ValueError("calls per hour, handle time and agents must be positive")
    return calls_per_hour * aht_s / 3600.0


def erlang_c(calls_per_hour: float, aht_s: float, agents: int, target_s: float = 20.0) -> ErlangResult:
    """M/M/N with infinite patience. Unstable (load ≥ agents) gives p_wait 1 and infinite ASA."""
    a = _check(calls_per_hour, aht_s, agents)
    if a >= agents:
        return ErlangResult("erlang-c", calls_per_hour, aht_s, agents, a, 1.0, math.inf, 0.0, target_s, 1.0)
    b = erlang_b(agents, a)
    c = agents * b / (agents - a * (1 - b))
    asa_all = c * aht_s / (agents - a)  # mean wait over all callers
    sl = 1 - c * math.exp(-(agents - a) * target_s / aht_s)
    # every caller is answered in Erlang C, so ASA is the mean wait of all callers
    return ErlangResult("erlang-c", calls_per_hour, aht_s, agents, a, c, asa_all, sl, target_s, a / agents)


def erlang_a(calls_per_hour: float, aht_s: float, agents: int, patience_s: float,
             target_s: float = 20.0) -> ErlangResult:
    """M/M/N+M: callers abandon after an exponential patience with mean ``patience_s``."""
    a = _check(calls_per_hour, aht_s, agents)
    if patience_s <= 0:
        raise ValueError("patience must be positive")
    lam, mu, theta = calls_per_hour / 3600.0, 1.0 / aht_s, 1.0 / patience_s
    # stationary distribution of the number in system, in log space for stability
    max_queue = _queue_bound(lam, agents * mu, theta)
    n = np.arange(0, agents + max_queue + 1)
    death = np.minimum(n, agents) * mu + np.maximum(n - agents, 0) * theta
    log_terms = np.concatenate(([0.0], np.cumsum(np.log(lam) - np.log(death[1:]))))
    pi = np.exp(log_terms - log_terms.max())
    pi /= pi.sum()
    waiting = pi[agents:]  # arrivals that find all agents busy; m = 0.. callers ahead
    keep = int(np.searchsorted(np.cumsum(waiting), waiting.sum() * (1 - 1e-13))) + 1
    waiting = waiting[:keep]  # the tail beyond is negligible
    p_wait = float(waiting.sum())
    m = np.arange(len(waiting))
    rates = agents * mu + m * theta  # stage with i callers ahead advances at this rate
    advance = rates / (rates + theta)
    p_served = np.cumprod(advance)  # S_m: served from m ahead = Π_{i≤m} advance_i
    mean_stage = np.cumsum(1.0 / (rates + theta))
    served_wait = float((waiting * p_served * mean_stage).sum())
    answered = float(pi[:agents].sum() + (waiting * p_served).sum())
    asa = served_wait / answered if answered else math.inf
    within = _stages_done_by(rates + theta, target_s)  # P(all m+1 stages done by T)
    sl = float(pi[:agents].sum() + (waiting * p_served * within).sum())
    abandon = 1.0 - answered
    occupancy = lam * answered / (agents * mu)
    return ErlangResult("erlang-a", calls_per_hour, aht_s, agents, a, p_wait, asa, sl, target_s,
                        occupancy, abandon, patience_s)


def _queue_bound(lam: float, service: float, theta: float) -> int:
    """Queue length beyond which the stationary tail is negligible (< 1e-15)."""
    q = max(10, int(3 * lam / theta))
    return min(q + int(20 * math.sqrt(q + 1)) + int(service / theta), 20000)


def _stages_done_by(stage_rates: np.ndarray, t: float) -> np.ndarray:
    """For each m, P(X_m + … + X_0 ≤ t) with X_i ~ Exp(stage_rates[i]): a pure-death chain
    solved by uniformization (a Poisson mixture of a discrete chain's absorption)."""
    size = len(stage_rates)
    big = float(stage_rates.max())
    down = stage_rates / big  # per step: probability of completing the current stage
    p = np.eye(size)  # p[s, i]: started with s ahead, now at stage i
    absorbed = np.zeros(size)  # P(done within k steps | s)
    weight = math.exp(-big * t)  # Poisson(k = 0; Λt)
    total, result = weight, np.zeros(size)
    k = 0
    while total < 1 - 1e-12 and k < 100000:
        k += 1
        moved = p * down
        absorbed += moved[:, 0]
        p = p - moved
        p[:, :-1] += moved[:, 1:]
        weight *= big * t / k
        total += weight
        result += weight * absorbed
    return np.clip(result, 0.0, 1.0)


def agents_for_service_level(calls_per_hour: float, aht_s: float, service_level: float,
                             target_s: float = 20.0, patience_s: float | None = None,
                             max_agents: int = 10000) -> ErlangResult:
    """The fewest agents whose service level reaches ``service_level`` (the inverse problem)."""
    if not 0 < service_level < 1:
        raise ValueError("service level must be between 0 and 1")
    a = calls_per_hour * aht_s / 3600.0
    for agents in range(max(1, int(a)), max_agents + 1):
        result = (erlang_a(calls_per_hour, aht_s, agents, patience_s, target_s) if patience_s
                  else erlang_c(calls_per_hour, aht_s, agents, target_s))
        if result.service_level >= service_level:
            return result
    raise ValueError(f"no staffing up to {max_agents} agents reaches {service_level:.0%}")
