"""The ``--report FILE.html`` page of ``acd loopback``: one self-contained file (inline CSS and
SVG, no script, nothing fetched) with the verdict, the summary, three plots (round-trip
histogram, PESQ per call against the codec's ceiling, setup-time histogram) and a row per call;
for a sweep (``--sweep-loss``/``--sweep-jitter``) also "Quality vs impairment": PESQ against
loss and against jitter, and a row per step.
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path
from typing import Any

__all__ = ["render_html", "write_report", "histogram_svg", "pesq_svg", "sweep_svg"]

log = logging.getLogger(__name__)

_W, _H = 640, 240
_M = {"l": 48, "r": 16, "t": 28, "b": 40}  # plot margins
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:900px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600}
.pass{background:#e3f4e6;color:#145a26}.fail{background:#fbe4e4;color:#8a1c1c}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}svg{display:block;margin:8px 0}
svg text{font:11px system-ui,sans-serif;fill:#333}.bar{fill:#4a7bd0}.ceil{stroke:#d0473c;stroke-width:2}
.gap{stroke:#999;stroke-dasharray:4 3}.axis{stroke:#888}.pt{fill:#4a7bd0}.bad{fill:#d0473c}
.sw{fill:none;stroke-width:2}.sw-pesq{stroke:#4a7bd0}.sw-ceil{stroke:#d0473c;stroke-dasharray:7 4}
.sw-gap{stroke:#888;stroke-dasharray:2 3}.sw-limit{stroke:#e0a030;stroke-width:1;stroke-dasharray:3 3}
.sq{fill:#888}td.low{color:#8a1c1c;font-weight:600}svg text.lbl{paint-order:stroke;stroke:#fff;stroke-width:3px}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: object, unit: str = "", digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}{unit}"
    return f"{x}{unit}"


def _nice_step(span: float, target: int = 6) -> float:
    raw = max(span, 1e-9) / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _axes(x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str, title: str,
          yfmt: str = "{:g}", integer: bool = False) -> tuple[list[str], Any, Any]:
    """SVG axis lines, ticks and labels; returns (parts, x mapper, y mapper)."""
    pw, ph = _W - _M["l"] - _M["r"], _H - _M["t"] - _M["b"]

    def fx(v: float) -> float:
        return _M["l"] + (v - x0) / ((x1 - x0) or 1) * pw

    def fy(v: float) -> float:
        return _M["t"] + ph - (v - y0) / ((y1 - y0) or 1) * ph

    parts = [f'<text x="{_W / 2}" y="16" text-anchor="middle" font-weight="600">{_e(title)}</text>',
             f'<line class="axis" x1="{_M["l"]}" y1="{_M["t"] + ph}" x2="{_W - _M["r"]}" y2="{_M["t"] + ph}"/>',
             f'<line class="axis" x1="{_M["l"]}" y1="{_M["t"]}" x2="{_M["l"]}" y2="{_M["t"] + ph}"/>',
             f'<text x="{_W / 2}" y="{_H - 6}" text-anchor="middle">{_e(xlabel)}</text>',
             f'<text x="12" y="{_H / 2}" text-anchor="middle" transform="rotate(-90 12 {_H / 2})">{_e(ylabel)}</text>']
    step = _nice_step(y1 - y0, 4)
    if integer:
        step = max(1.0, math.ceil(step))
    v = math.ceil(y0 / step) * step
    while v <= y1 + 1e-9:
        parts.append(f'<text x="{_M["l"] - 4}" y="{fy(v) + 4:.1f}" text-anchor="end">{yfmt.format(v)}</text>')
        v += step
    return parts, fx, fy


def histogram_svg(values: list[float], title: str, xlabel: str, bins: int = 12) -> str:
    """A histogram of ``values`` as an inline ``<svg>`` (a note when there is nothing to plot)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return f'<svg width="{_W}" height="40" role="img"><text x="8" y="24">{_e(title)}: no data</text></svg>'
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in vals:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    parts, fx, fy = _axes(lo, hi, 0, max(counts), xlabel, "calls", title, "{:.0f}", integer=True)
    for i, n in enumerate(counts):
        if n:
            x, x2, y = fx(lo + i * width), fx(lo + (i + 1) * width), fy(n)
            parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{max(x2 - x - 2, 1):.1f}" '
                         f'height="{fy(0) - y:.1f}"><title>{n} call(s), {lo + i * width:.1f}–'
                         f'{lo + (i + 1) * width:.1f}</title></rect>')
    step = _nice_step(hi - lo)
    v = math.ceil(lo / step) * step
    while v <= hi + 1e-9:
        parts.append(f'<text x="{fx(v):.1f}" y="{_H - _M["b"] + 14}" text-anchor="middle">{v:g}</text>')
        v += step
    return f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">{"".join(parts)}</svg>'


def pesq_svg(calls: list[dict[str, Any]], silent_gaps: float | None = None) -> str:
    """PESQ per call (dots) against its codec ceiling (red ticks); a dashed line for the
    same loss left silent when known."""
    scored = [c for c in calls if c.get("pesq") is not None]
    if not scored:
        return f'<svg width="{_W}" height="40" role="img"><text x="8" y="24">PESQ per call: no data</text></svg>'
    ys = [c["pesq"] for c in scored] + [c["pesq_ceiling"] for c in scored if c.get("pesq_ceiling")]
    if silent_gaps is not None:
        ys.append(silent_gaps)
    lo, hi = max(1.0, math.floor(min(ys) * 2) / 2 - 0.5), min(4.75, math.ceil(max(ys) * 2) / 2 + 0.25)
    ids = [c["id"] for c in calls]
    parts, fx, fy = _axes(min(ids) - 0.5, max(ids) + 0.5, lo, hi, "call", "PESQ (MOS-LQO)",
                          "PESQ per call vs the codec's ceiling", "{:.1f}")
    half = min(12.0, (fx(1) - fx(0)) * 0.4)
    if silent_gaps is not None:
        parts.append(f'<line class="gap" x1="{_M["l"]}" x2="{_W - _M["r"]}" y1="{fy(silent_gaps):.1f}" '
                     f'y2="{fy(silent_gaps):.1f}"><title>same loss left silent: {silent_gaps:.2f}</title></line>')
    for c in scored:
        x = fx(c["id"])
        if c.get("pesq_ceiling") is not None:
            y = fy(c["pesq_ceiling"])
            parts.append(f'<line class="ceil" x1="{x - half:.1f}" x2="{x + half:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<circle class="pt" cx="{x:.1f}" cy="{fy(c["pesq"]):.1f}" r="4"><title>call {c["id"]}: '
                     f'{c["pesq"]:.2f} (ceiling {_fmt(c.get("pesq_ceiling"), digits=2)})</title></circle>')
    for c in calls:
        if c.get("pesq") is None:
            parts.append(f'<text class="bad" x="{fx(c["id"]):.1f}" y="{fy(lo) - 4:.1f}" text-anchor="middle">×</text>')
    legend = [("pt", "● PESQ of the call"), ("ceil", "— codec ceiling")]
    if silent_gaps is not None:
        legend.append(("gap", "- - same loss, gaps silent"))
    for k, (_cls, label) in enumerate(reversed(legend)):  # bottom left: the axis starts 0.5 below the scores
        parts.append(f'<text x="{_M["l"] + 8}" y="{fy(lo) - 8 - 14 * k:.1f}">{_e(label)}</text>')
    step = max(1, len(ids) // 10)
    for i in ids[::step]:
        parts.append(f'<text x="{fx(i):.1f}" y="{_H - _M["b"] + 14}" text-anchor="middle">{i}</text>')
    return f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">{"".join(parts)}</svg>'


# ------------------------------------------------------------------------------ sweep

_AXES = {"loss": ("loss_pct", "packet loss (%)", "PESQ vs packet loss", "{:g} % loss"),
         "jitter": ("jitter_ms", "jitter (ms, mean hold)", "PESQ vs jitter", "{:g} ms jitter")}


def _xticks(xs: list[float], fx: Any) -> list[str]:
    parts, last = [], -1e9
    for v in sorted(set(xs)):
        if fx(v) - last >= 24:  # no overlapping labels
            parts.append(f'<text x="{fx(v):.1f}" y="{_H - _M["b"] + 14}" text-anchor="middle">{_e(f"{v:g}")}</text>')
            last = fx(v)
    return parts


def _polyline(rows: list[dict[str, Any]], key: str, xkey: str, cls: str, title: str, fx: Any, fy: Any) -> str:
    pts = " ".join(f"{fx(r[xkey]):.1f},{fy(r[key]):.1f}" for r in rows if r.get(key) is not None)
    return f'<polyline class="sw {cls}" points="{pts}"><title>{_e(title)}</title></polyline>' if pts else ""


def sweep_svg(rows: list[dict[str, Any]], axis: str, limit: float | None = None) -> str:
    """PESQ (1 to 4.5) against loss or jitter: the measured median per step, the codec's
    ceiling (dashed), the same loss with gaps left silent (loss only) and the verdict's limit."""
    xkey, xlabel, title, what = _AXES[axis]
    rows = sorted(rows, key=lambda r: r[xkey])
    xs = [float(r[xkey]) for r in rows]
    if len(set(xs)) < 2:
        return f'<svg width="{_W}" height="40" role="img"><text x="8" y="24">{_e(title)}: one step only</text></svg>'
    parts, fx, fy = _axes(min(xs), max(xs), 1.0, 4.5, xlabel, "PESQ (MOS-LQO)", title, "{:.1f}")
    parts.insert(0, f"<title>{_e(title)}</title>")
    parts += _xticks(xs, fx)
    legend = [("sw-pesq", "median PESQ (measured)"), ("sw-ceil", "codec ceiling")]
    if limit is not None:
        y = fy(limit)
        parts.append(f'<line class="sw-limit" x1="{_M["l"]}" x2="{_W - _M["r"]}" y1="{y:.1f}" y2="{y:.1f}">'
                     f'<title>{_e(f"verdict limit {limit:.2f}")}</title></line>')
        legend.append(("sw-limit", f"verdict limit {limit:.2f} (ceiling − margin)"))
    parts.append(_polyline(rows, "pesq_ceiling", xkey, "sw-ceil", "codec ceiling", fx, fy))
    if axis == "loss" and any(r.get("pesq_silent_gaps") is not None for r in rows):
        parts.append(_polyline(rows, "pesq_silent_gaps", xkey, "sw-gap", "same loss, gaps left silent", fx, fy))
        for r in rows:
            if r.get("pesq_silent_gaps") is not None:
                parts.append(f'<rect class="sq" x="{fx(r[xkey]) - 3:.1f}" y="{fy(r["pesq_silent_gaps"]) - 3:.1f}" '
                             f'width="6" height="6"><title>{_e(what.format(r[xkey]))}, gaps left silent: '
                             f'{_e(format(r["pesq_silent_gaps"], ".2f"))}</title></rect>')
        legend.append(("sw-gap", "same loss, gaps left silent (offline)"))
    parts.append(_polyline(rows, "pesq_median", xkey, "sw-pesq", "median PESQ", fx, fy))
    for r in rows:
        x = fx(r[xkey])
        if r.get("pesq_median") is None:
            parts.append(f'<text class="bad" x="{x:.1f}" y="{fy(1.0) - 4:.1f}" text-anchor="middle">×<title>'
                         f'{_e(what.format(r[xkey]))}: no call scored</title></text>')
            continue
        low = limit is not None and r["pesq_median"] < limit
        parts.append(f'<circle class="{"bad" if low else "pt"}" cx="{x:.1f}" cy="{fy(r["pesq_median"]):.1f}" r="4">'
                     f'<title>{_e(what.format(r[xkey]))}: PESQ {_e(format(r["pesq_median"], ".2f"))}</title></circle>')
    first = _first_below(rows, xkey, limit)
    if first is not None:
        x = fx(first)
        parts.append(f'<line class="sw-limit" x1="{x:.1f}" x2="{x:.1f}" y1="{_M["t"]}" y2="{fy(1.0):.1f}"/>')
        left = x < _W / 2  # the label on the side with room
        parts.append(f'<text class="lbl" x="{x + 4 if left else x - 4:.1f}" y="{fy(limit) + 13:.1f}" '
                     f'text-anchor="{"start" if left else "end"}">{_e(f"below {limit:.2f} from {what.format(first)}")}'
                     f'</text>')
    for k, (cls, label) in enumerate(reversed(legend)):  # bottom left: low scores at low impairment are rare
        y = fy(1.0) - 8 - 14 * k
        parts.append(f'<line class="sw {cls}" x1="{_M["l"] + 8}" x2="{_M["l"] + 30}" y1="{y - 4:.1f}" '
                     f'y2="{y - 4:.1f}"/><text x="{_M["l"] + 36}" y="{y:.1f}">{_e(label)}</text>')
    return f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">{"".join(parts)}</svg>'


def _first_below(rows: list[dict[str, Any]], xkey: str, limit: float | None) -> float | None:
    """The least impairment at which the median PESQ is below ``limit``."""
    if limit is None:
        return None
    return next((float(r[xkey]) for r in sorted(rows, key=lambda r: r[xkey])
                 if r.get("pesq_median") is not None and r["pesq_median"] < limit), None)


def _sweep_limit(result: dict[str, Any]) -> tuple[float | None, float]:
    """(ceiling − margin of the verdict, the margin): where a step would fail the verdict."""
    th = result.get("verdict", {}).get("thresholds") or {}
    margin = float(th.get("min_pesq_margin", 0.3))
    key = "pesq_ceiling_tandem" if th.get("ceiling") == "tandem" else "pesq_ceiling"
    rows = result["sweep"]
    step = result.get("verdict", {}).get("step")
    ceiling = next((r.get(key) for r in rows if r.get("step") == step and r.get(key) is not None), None)
    if ceiling is None:
        ceilings = sorted(r[key] for r in rows if r.get(key) is not None)
        ceiling = ceilings[len(ceilings) // 2] if ceilings else None
    return (None if ceiling is None else round(ceiling - margin, 2)), margin


def _sweep_series(result: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The steps along loss (jitter as --jitter) and along jitter (loss as --loss), each when it
    has two or more points."""
    rows, s = result["sweep"], result["summary"]
    out = []
    for axis, key, other, base in (("loss", "loss_pct", "jitter_ms", s.get("jitter_ms", 0.0)),
                                   ("jitter", "jitter_ms", "loss_pct", s.get("loss_pct", 0.0))):
        line = [r for r in rows if r[other] == base]
        if len({r[key] for r in line}) >= 2:
            out.append((axis, line))
    return out


def _sweep_table(rows: list[dict[str, Any]], limit: float | None) -> str:
    head = ("step", "loss %", "jitter ms", "loss measured %", "calls", "failed", "PESQ", "ceiling",
            "gaps silent", "RTT median ms", "RTT max median ms", "impaired %")
    out = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        low = limit is not None and r.get("pesq_median") is not None and r["pesq_median"] < limit
        cells = [(r["step"], ""), (f"{r['loss_pct']:g}", ""), (f"{r['jitter_ms']:g}", ""),
                 (_fmt(r.get("loss_measured_pct"), digits=2), ""), (r["calls"], ""), (r["failed"], ""),
                 (_fmt(r.get("pesq_median"), digits=2), ' class="low"' if low else ""),
                 (_fmt(r.get("pesq_ceiling"), digits=2), ""), (_fmt(r.get("pesq_silent_gaps"), digits=2), ""),
                 (_fmt(r.get("rtt_ms_median")), ""), (_fmt(r.get("rtt_max_ms_median")), ""),
                 (_fmt(r.get("impaired_pct_median")), "")]
        out.append("<tr>" + "".join(f"<td{cls}>{_e(v)}</td>" for v, cls in cells) + "</tr>")
    return "<table>" + "".join(out) + "</table>"


def _sweep_section(result: dict[str, Any]) -> str:
    rows = result.get("sweep") or []
    if len(rows) < 2:
        return ""
    limit, margin = _sweep_limit(result)
    parts = ['<h2 id="sweep">Quality vs impairment</h2>']
    for axis, line in _sweep_series(result):
        xkey, _, _, what = _AXES[axis]
        parts.append(sweep_svg(line, axis, limit))
        first = _first_below(line, xkey, limit)
        if limit is None:
            text = "No step could be scored."
        elif first is not None:
            text = f"PESQ falls below {limit:.2f} (the codec's ceiling − {margin:g}) from {what.format(first)}."
        else:
            text = (f"PESQ stays at or above {limit:.2f} (the codec's ceiling − {margin:g}) up to "
                    f"{what.format(max(r[xkey] for r in line))}.")
        parts.append(f'<p class="below">{_e(text)}</p>')
    parts.append(_sweep_table(rows, limit))
    parts.append("<p><small>Each step runs the same calls with that step's loss and jitter. Gaps silent: "
                 "the speech through the codec offline with the loss measured at that step and the lost "
                 "frames left silent; a measured PESQ well above it means the far end conceals the loss. "
                 "RTT max grows when a jitter buffer grows.</small></p>")
    return "\n".join(parts)


_SUMMARY_ROWS = (("target", "target", ""), ("codec", "codec", ""), ("PESQ model", "pesq_mode", ""),
                 ("calls / measured / failed", None, ""), ("PESQ median", "pesq_median", ""),
                 ("codec ceiling", "pesq_ceiling", ""), ("codec ceiling, tandem (twice)", "pesq_ceiling_tandem", ""),
                 ("PESQ − ceiling (median)", "pesq_diff_median", ""),
                 ("round trip median / p95", None, ""), ("highest round trip", "rtt_max_ms", " ms"),
                 ("round trip on the wire (target alone)", "rtt_wire_ms_median", " ms"),
                 ("setup median / p95", None, ""), ("post-dial delay median", "pdd_ms_median", " ms"),
                 ("impaired frames median", "impaired_pct_median", " %"), ("loss / jitter applied", None, ""),
                 ("loss measured", "loss_measured_pct", " %"),
                 ("same loss, gaps silent (offline)", "pesq_silent_gaps", ""),
                 ("same loss, concealed (offline)", "pesq_concealed_offline", ""))


def _applied(s: dict[str, Any], direction: str) -> str:
    rows = s.get("sweep")
    if not rows:
        return f"{s.get('loss_pct', 0):g} % / {s.get('jitter_ms', 0):g} ms{direction}"
    loss = ", ".join(dict.fromkeys(f"{r['loss_pct']:g}" for r in rows))
    jitter = ", ".join(dict.fromkeys(f"{r['jitter_ms']:g}" for r in rows))
    return f"sweep of {len(rows)} steps: loss {loss} % / jitter {jitter} ms{direction}"


def _summary_table(s: dict[str, Any]) -> str:
    rows = []
    for label, key, unit in _SUMMARY_ROWS:
        if key is None:
            direction = f" ({s['impair_direction']})" if s.get("impair_direction") else ""
            value = {"calls / measured / failed": f"{s['calls']} / {s['measured']} / {s['failed']}",
                     "round trip median / p95": f"{_fmt(s.get('rtt_ms_median'), ' ms')} / "
                                                f"{_fmt(s.get('rtt_ms_p95'), ' ms')}",
                     "setup median / p95": f"{_fmt(s.get('setup_ms_median'), ' ms')} / "
                                           f"{_fmt(s.get('setup_ms_p95'), ' ms')}",
                     "loss / jitter applied": _applied(s, direction),
                     }[label]
        elif key not in s:
            continue
        else:
            value = _fmt(s.get(key), unit, 2 if "pesq" in key else 1)
        rows.append(f'<tr><td class="l">{_e(label)}</td><td class="l">{_e(value)}</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def _calls_table(calls: list[dict[str, Any]]) -> str:
    sweep = any("step" in c for c in calls)
    head = ("#", *(("loss %", "jitter ms") if sweep else ()), "answer", "setup ms", "PDD ms", "RTT ms", "RTT max",
            "RTT wire", "PESQ", "ceiling", "diff", "impaired %", "RTP dropped", "error")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for c in calls:
        relay = c.get("relay") or {}
        dropped = sum((relay.get(d) or {}).get("dropped", 0) for d in ("up", "down")) if relay else None
        step = (_fmt(c.get("loss_pct"), digits=1), _fmt(c.get("jitter_ms"), digits=0)) if sweep else ()
        cells = (c["id"], *step, c.get("status_code") or "–", _fmt(c.get("setup_ms")), _fmt(c.get("pdd_ms")),
                 _fmt(c.get("rtt_ms")), _fmt(c.get("rtt_max_ms")), _fmt(c.get("rtt_wire_ms")),
                 _fmt(c.get("pesq"), digits=2),
                 _fmt(c.get("pesq_ceiling"), digits=2), _fmt(c.get("pesq_diff"), digits=2),
                 _fmt(c.get("impaired_pct")), _fmt(dropped))
        rows.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in cells)
                    + f'<td class="l">{_e(c.get("error") or "")}</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def render_html(result: dict[str, Any]) -> str:
    """The whole page for one ``run_loopback`` result."""
    s, calls, verdict = result["summary"], result["calls"], result["verdict"]
    cls = "pass" if verdict["ok"] else "fail"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Homeline loopback: {_e(s['target'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Loopback test of {_e(s['target'])}</h1>",
        f'<p class="verdict {cls}" id="verdict">{_e(verdict["text"])}</p>',
        "<h2>Summary" + (" of all steps" if result.get("sweep") else "") + "</h2>", _summary_table(s),
        _sweep_section(result),
        "<h2>Round trip</h2>", histogram_svg([c.get("rtt_ms") for c in calls], "Round-trip latency",
                                             "round trip (ms)"),
        "<h2>Speech quality</h2>", pesq_svg(calls, s.get("pesq_silent_gaps")),
        "<h2>Call setup</h2>", histogram_svg([c.get("setup_ms") for c in calls], "Setup time (INVITE → 200)",
                                             "setup (ms)"),
        "<h2>Calls</h2>", _calls_table(calls),
        "<p><small>PESQ: ITU-T P.862 (narrowband) or P.862.2 (wideband) through the <code>pesq</code> package; "
        "the ceiling is the same speech through the same codec offline. Round trip: cross-correlation of "
        "what was played with what came back (through the tester's own 20 ms-tick buffers); RTT is the lowest "
        "the call held, RTT max the highest; RTT wire is the target's alone, from the RTP seen leaving and "
        "coming back (with --wire or an impairment).</small></p>",
        "</body></html>"])


def write_report(result: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.write_text(render_html(result), encoding="utf-8")
    log.info("report written to %s", p)
    return p
