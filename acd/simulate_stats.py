"""Statistics of a simulation run, the Erlang prediction beside them, and the report.

:class:`RunStats` consumes the engine's records as the simulator drains them:
``CallRecord`` for the calls that entered during the measured window (after the warm-up) and
``AgentStateRecord`` for the agents' time. The definitions are those of :mod:`acd.erlang`
so that the two compare:

- ``offered``: calls that entered a queue during the window (join refusals included);
- ``p_wait``: share of the offered calls that did not reach an agent at once, i.e. whose
  ``wait_s`` (entry to answer, or to the end when unanswered) exceeds the simulated ring
  delay (0 by default, so: waited more than 0 s);
- ``asa_s``: mean ``wait_s`` of the answered calls;
- ``service_level``: answered with ``wait_s ≤ target_s``, over all offered calls (an
  abandoned call counts against it, whenever it abandoned);
- ``abandon_rate``: calls ended "abandoned" (the caller hung up before an answer) over offered;
- ``occupancy``: time agents spent reserved, on a call or in wrap-up, over their staffed time
  (logged in and not on break), both clipped to the window;
- EWT error: :func:`acd.engine.estimator.ewt_accuracy` over the answered calls of the window
  (``ewt``), and over those of them that had a non-zero estimate at entry, i.e. found no
  idle agent (``ewt_queued``: the callers a wait would be announced to).

Confidence: the window is cut into :data:`BATCHES` batches by entry time; the 95 % half-width
of a figure is Student's t (19 degrees of freedom) × the standard deviation of the batch
values / √20 (batch means).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from acd.engine.estimator import AccuracyReport, ewt_accuracy
from acd.engine.records import AgentStateRecord, CallRecord
from acd.erlang import ErlangResult

__all__ = ["RunStats", "SimResult", "format_report", "BATCHES"]

log = logging.getLogger(__name__)

BATCHES = 20
T_975_19 = 2.093  # Student's t, 97.5 % quantile, 19 degrees of freedom
BUSY = frozenset(("reserved", "on-call", "wrap-up"))
STAFFED = BUSY | {"available"}
EWT_CHUNK = 5000
COMPARED = ("p_wait", "asa_s", "service_level", "abandon_rate", "occupancy")


@dataclass(slots=True)
class _Batch:
    offered: int = 0
    waited: int = 0
    answered: int = 0
    wait_sum: float = 0.0
    within: int = 0
    abandoned: int = 0


@dataclass(slots=True)
class _ErrorSums:
    """Sums that merge :class:`AccuracyReport` s of disjoint sets of calls exactly."""

    calls: int = 0
    err: float = 0.0
    abs_err: float = 0.0
    sq_err: float = 0.0
    within_30s: float = 0.0
    within_25pct: float = 0.0

    def add(self, r: AccuracyReport) -> None:
        n = r.calls
        self.calls += n
        self.err += r.bias_s * n
        self.abs_err += r.mae_s * n
        self.sq_err += r.rmse_s * r.rmse_s * n
        self.within_30s += r.within_30s * n
        self.within_25pct += r.within_25pct * n

    def as_dict(self) -> dict[str, float | int] | None:
        n = self.calls
        if not n:
            return None
        return {"calls": n, "bias_s": self.err / n, "mae_s": self.abs_err / n,
                "rmse_s": math.sqrt(self.sq_err / n), "within_30s": self.within_30s / n,
                "within_25pct": self.within_25pct / n}


class RunStats:
    """Accumulates the window's figures from the engine's records (bounded memory)."""

    def __init__(self, start: float, end: float, target_s: float, ring_delay_s: float) -> None:
        self.start, self.end = start, end
        self.target_s = target_s
        self.wait_threshold = ring_delay_s + 1e-9
        self.batch_len = (end - start) / BATCHES
        self.batches = [_Batch() for _ in range(BATCHES)]
        self.outcomes: dict[str, int] = {}
        self.talk_sum = 0.0
        self.max_wait = 0.0
        self.busy_s = 0.0
        self.staffed_s = 0.0
        self.agent_state: dict[str, tuple[str, float]] = {}
        self._ewt_buffer: list[CallRecord] = []
        self._ewt = _ErrorSums()
        self._ewt_queued = _ErrorSums()

    # -- calls ------------------------------------------------------------------------

    def call(self, r: CallRecord) -> None:
        """A call of the window ended."""
        i = min(BATCHES - 1, int((r.entered_at - self.start) / self.batch_len))
        b = self.batches[i]
        b.offered += 1
        self.outcomes[r.outcome] = self.outcomes.get(r.outcome, 0) + 1
        wait = r.wait_s
        if wait > self.wait_threshold:
            b.waited += 1
        if r.answered_at is not None:
            b.answered += 1
            b.wait_sum += wait
            self.talk_sum += r.talk_s
            if wait <= self.target_s:
                b.within += 1
            if wait > self.max_wait:
                self.max_wait = wait
            if r.ewt_at_entry_s is not None:
                self._ewt_buffer.append(r)
                if len(self._ewt_buffer) >= EWT_CHUNK:
                    self._flush_ewt()
        elif r.outcome == "abandoned":
            b.abandoned += 1

    def unfinished(self, entered_at: float) -> None:
        """A call of the window still waiting when the run was cut (overload): it waited."""
        i = min(BATCHES - 1, int((entered_at - self.start) / self.batch_len))
        self.batches[i].offered += 1
        self.batches[i].waited += 1
        self.outcomes["unfinished"] = self.outcomes.get("unfinished", 0) + 1

    def _flush_ewt(self) -> None:
        buf, self._ewt_buffer = self._ewt_buffer, []
        report = ewt_accuracy(buf, include_test=True).get("")  # every simulated call counts
        if report is not None:
            self._ewt.add(report)
        queued = ewt_accuracy([r for r in buf if r.ewt_at_entry_s], include_test=True).get("")
        if queued is not None:
            self._ewt_queued.add(queued)

    # -- agents -----------------------------------------------------------------------

    def agent(self, r: AgentStateRecord) -> None:
        """Occupancy from the agents' state changes (notes without a change are skipped)."""
        prev = self.agent_state.get(r.agent)
        if prev is not None:
            if prev[0] == r.to_state:
                return  # a note, or one break reason for another: same category
            self._interval(prev[0], prev[1], r.time)
        self.agent_state[r.agent] = (r.to_state, r.time)

    def _interval(self, state: str, t0: float, t1: float) -> None:
        lo, hi = max(t0, self.start), min(t1, self.end)
        if hi <= lo or state not in STAFFED:
            return
        self.staffed_s += hi - lo
        if state in BUSY:
            self.busy_s += hi - lo

    # -- the result -------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Close the agents' open intervals at the window's end; the figures as a dict."""
        for state, since in self.agent_state.values():
            self._interval(state, since, self.end)
        self.agent_state.clear()
        self._flush_ewt()
        bs = self.batches
        offered = sum(b.offered for b in bs)
        answered = sum(b.answered for b in bs)
        out: dict[str, Any] = {
            "offered": offered,
            "handled": answered,
            "abandoned": sum(b.abandoned for b in bs),
            "outcomes": dict(sorted(self.outcomes.items())),
            "p_wait": _ratio(sum(b.waited for b in bs), offered),
            "asa_s": _ratio(sum(b.wait_sum for b in bs), answered),
            "service_level": _ratio(sum(b.within for b in bs), offered),
            "target_s": self.target_s,
            "abandon_rate": _ratio(sum(b.abandoned for b in bs), offered),
            "occupancy": _ratio(self.busy_s, self.staffed_s),
            "mean_talk_s": _ratio(self.talk_sum, answered),
            "max_wait_s": self.max_wait,
            "ewt": self._ewt.as_dict(),
            "ewt_queued": self._ewt_queued.as_dict(),
            "ci95": {
                "p_wait": _half_width([_ratio(b.waited, b.offered) for b in bs]),
                "asa_s": _half_width([_ratio(b.wait_sum, b.answered) for b in bs]),
                "service_level": _half_width([_ratio(b.within, b.offered) for b in bs]),
                "abandon_rate": _half_width([_ratio(b.abandoned, b.offered) for b in bs]),
            },
        }
        return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _half_width(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    if len(vals) < BATCHES:
        return None
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return T_975_19 * math.sqrt(var / len(vals))


@dataclass(frozen=True)
class SimResult:
    """A run's figures (``figures``: see the module docstring), its parameters, the Erlang
    prediction for the same parameters and the relative differences (sim / model − 1)."""

    figures: dict[str, Any]
    params: dict[str, Any]
    prediction: ErlangResult | None
    prediction_note: str
    actions: dict[str, int]
    engine_stats: dict[str, int]
    engine_inputs: int
    simulated_s: float
    calls_simulated: int
    wall_s: float = field(compare=False, default=0.0)

    @property
    def relative_difference(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        pred = self.prediction
        for key in COMPARED:
            sim, model = self.figures.get(key), getattr(pred, key, None) if pred else None
            ok = sim is not None and model is not None and math.isfinite(model) and model != 0
            out[key] = sim / model - 1 if ok else None  # type: ignore[operator]
        return out

    def as_dict(self) -> dict[str, Any]:
        """Everything except the wall-clock time: equal for equal parameters and seed."""
        out = dict(self.figures)
        out["params"] = dict(self.params)
        out["prediction"] = _finite(asdict(self.prediction)) if self.prediction else None
        out["prediction_note"] = self.prediction_note
        out["relative_difference"] = self.relative_difference
        out["actions"] = dict(self.actions)
        out["engine_stats"] = dict(self.engine_stats)
        out["engine_inputs"] = self.engine_inputs
        out["simulated_s"] = self.simulated_s
        out["calls_simulated"] = self.calls_simulated
        return out


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: an overloaded Erlang C's infinite ASA becomes None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


# -- the readable report ----------------------------------------------------------------


def _fmt(key: str, v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    if key == "asa_s":
        return f"{v:.2f} s"
    if key == "p_wait":
        return f"{v:.4f}"
    return f"{100 * v:.2f} %"


def _fmt_ci(key: str, v: float | None, hw: float | None) -> str:
    s = _fmt(key, v)
    if hw is None or v is None:
        return s
    if key == "asa_s":
        return f"{s[:-2]} ± {hw:.2f} s"
    if key == "p_wait":
        return f"{s} ± {hw:.4f}"
    return f"{s[:-2]} ± {100 * hw:.2f} %"


def format_report(res: SimResult) -> str:
    """The side-by-side table the CLI prints without ``--json``."""
    p, f = res.params, res.figures
    pred = res.prediction
    model = {"erlang-a": "Erlang A", "erlang-c": "Erlang C"}.get(pred.model, "") if pred else ""
    agents = f"{p['agents']} agents" + (f" from {p['config']}" if p.get("config") else "")
    head = (f"Simulation of the ACD engine: {p['calls_per_hour']:g} calls/h, AHT {p['aht_s']:g} s, "
            f"wrap-up {p['wrapup_s']:g} s, {agents}, {p['hours']:g} h "
            f"(warm-up {p['warmup_hours']:g} h), seed {p['seed']}")
    if p.get("patience_s"):
        head += f", mean patience {p['patience_s']:g} s"
    lines = [head]
    if res.prediction_note:
        lines.append(f"  note: {res.prediction_note}")
    lines.append(f"  {'':<22}{'simulated (± 95 %)':>24}{model:>14}{'difference':>12}")
    labels = {"p_wait": "P(wait)", "asa_s": "ASA",
              "service_level": f"service level ({f['target_s']:g} s)",
              "abandon_rate": "abandonment", "occupancy": "occupancy"}
    rel = res.relative_difference
    for key in COMPARED:
        sim = _fmt_ci(key, f.get(key), f["ci95"].get(key))
        mod = _fmt(key, getattr(pred, key, None)) if pred else "-"
        d = rel[key]
        diff = f"{100 * d:+.1f} %" if d is not None else "-"
        lines.append(f"  {labels[key]:<22}{sim:>24}{mod:>14}{diff:>12}")
    lines.append(f"  offered {f['offered']}, handled {f['handled']}, abandoned {f['abandoned']}; "
                 f"outcomes " + ", ".join(f"{k} {v}" for k, v in f["outcomes"].items()))
    talk = f["mean_talk_s"]
    lines.append(f"  mean talk {talk:.1f} s, longest answered wait {f['max_wait_s']:.1f} s"
                 if talk is not None else "  no call answered")
    for key, what in (("ewt", "all answered calls"), ("ewt_queued", "callers who queued")):
        e = f[key]
        if e is None:
            lines.append(f"  EWT at entry ({what}): no estimate to compare")
            continue
        lines.append(f"  EWT at entry ({what}, {e['calls']}): bias {e['bias_s']:+.2f} s, "
                     f"MAE {e['mae_s']:.2f} s, RMSE {e['rmse_s']:.2f} s, "
                     f"within 30 s {100 * e['within_30s']:.1f} %, "
                     f"within 25 % {100 * e['within_25pct']:.1f} %")
    lines.append("  caller-side actions (not simulated): "
                 + (", ".join(f"{k} {v}" for k, v in res.actions.items()
                              if k in ("StartMusic", "Ringback", "Announce")) or "none"))
    rate = res.calls_simulated / res.wall_s if res.wall_s > 0 else 0.0
    lines.append(f"  {res.calls_simulated} calls simulated ({res.simulated_s / 3600:.2f} h, "
                 f"{res.engine_inputs} engine inputs) in {res.wall_s:.1f} s: "
                 f"{rate:,.0f} calls per second")
    return "\n".join(lines)
