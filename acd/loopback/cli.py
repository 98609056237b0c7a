"""``acd loopback TARGET_URI``: call a SIP target with pjsua2, play speech, measure what comes back.

Registered in ``acd/cli.py`` through :func:`add_parser`; also runs alone as
``python -m acd.loopback.cli``. Exit status: 0 when the verdict passes, 1 when it fails or the
run could not be made, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["add_parser", "cmd_loopback", "main", "parse_steps"]

log = logging.getLogger(__name__)

_DESCRIPTION = ("Call a SIP target with pjsua2 (an independent SIP stack), play reference speech, record "
                "what comes back and measure per call: round trip, PESQ beside the codec's own ceiling, "
                "setup time, post-dial delay and lost audio. Exit status 0 when the verdict passes, 1 "
                "otherwise.")
_EPILOG = """examples:
  acd loopback sip:echo@127.0.0.1:5060
  acd loopback sip:support@127.0.0.1:5060 --calls 20 --rate 2 --concurrency 8 --report run.html
  acd loopback sip:echo@pbx.example.com --user trunk1 --password s3cret --codec g722 --loss 3 --jitter 20
  acd loopback sip:echo@127.0.0.1:5060 --sweep-loss 0,2,5,10 --sweep-jitter 20,60,120 --report sweep.html

Each call plays espeak-ng speech (made once into ~/.cache/homeline/loopback) after
--lead-in seconds of silence and records what comes back. Round trip: cross-correlation;
PESQ: ITU-T P.862 (G.711, narrowband) or P.862.2 (G.722, wideband), beside the codec's own
score on the same speech offline (the ceiling). --loss/--jitter put a SIP+RTP relay between
the pjsua2 workers and the target (UDP targets only).

Sweep: --sweep-loss 0,2,5,10 and/or --sweep-jitter 0,20,40,80 run the calls once per step
(loss steps, then jitter steps; the other impairment as --loss/--jitter) and the report
plots PESQ against the impairment. The verdict is that of the least impaired step."""


def parse_steps(text: str, below: float | None = None, unit: str = "") -> list[float]:
    """``"0,2,5"`` -> ``[0.0, 2.0, 5.0]``: numbers >= 0 (and below ``below``), duplicates
    dropped, order kept; ValueError for anything else."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(items):
        raise ValueError(f"expected numbers separated by commas, such as 0,2,5; not {text!r}")
    steps: list[float] = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{item!r} is not a number >= 0")
        if below is not None and value >= below:
            raise ValueError(f"{item}{unit} is out of range: it must be below {below:g}{unit}")
        if value not in steps:
            steps.append(value)
    return steps


def _arg_steps(below: float | None, unit: str) -> Any:
    def parse(text: str) -> list[float]:
        try:
            return parse_steps(text, below, unit)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``loopback`` subcommand to an ``argparse`` subparsers object."""
    p = sub.add_parser("loopback", help="call a SIP target with pjsua2, play speech, measure round trip, "
                                        "PESQ and setup time", description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="TARGET_URI", help="e.g. sip:echo@127.0.0.1:5060 or a queue's number")
    p.add_argument("--calls", type=int, default=1, help="calls to place (default 1)")
    p.add_argument("--rate", type=float, default=1.0, help="new calls per second (default 1)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="most calls at once (default: --calls, at most 4); 4 per pjsua2 worker process")
    p.add_argument("--duration", type=float, help="talk time per call in seconds (default: the speech, "
                                                  "about 10 s; shorter scores less of it)")
    p.add_argument("--user", help="digest user name")
    p.add_argument("--password", help="digest password")
    p.add_argument("--codec", choices=("pcmu", "pcma", "g722"), default="pcmu", help="the one codec offered")
    p.add_argument("--loss", type=float, default=0.0, metavar="PCT", help="drop this %% of our RTP")
    p.add_argument("--jitter", type=float, default=0.0, metavar="MS",
                   help="hold each RTP packet 0 to 2×MS ms (mean MS; packets may reorder)")
    p.add_argument("--impair", choices=("send", "recv", "both"), default="send",
                   help="direction of --loss/--jitter: what we send (default), receive, or both; when "
                        "what we receive is impaired, our own jitter buffer starts deeper (a frame for "
                        "loss, 2×jitter) so that the tester does not score itself")
    p.add_argument("--seed", type=int, help="random seed of the impairment")
    p.add_argument("--sweep-loss", type=_arg_steps(100.0, " %"), metavar="PCT,PCT,...",
                   help="run the calls once per loss step (e.g. 0,2,5,10), jitter as --jitter")
    p.add_argument("--sweep-jitter", type=_arg_steps(None, " ms"), metavar="MS,MS,...",
                   help="run the calls once per jitter step (e.g. 0,20,40,80), loss as --loss; after the "
                        "loss steps")
    p.add_argument("--sweep-parallel", type=_at_least_one, default=1, metavar="N",
                   help="sweep steps run at once (default 1; the target then sees N × --concurrency calls)")
    p.add_argument("--wire", action="store_true",
                   help="route RTP through the relay even without impairment, to measure the target's "
                        "round trip on the wire (rtt_wire_ms; UDP targets only)")
    p.add_argument("--bind", help="local IP address (default: the one that routes to the target)")
    p.add_argument("--reference", help="a 16-bit WAV to play instead of the built-in speech (8–12 s)")
    p.add_argument("--cache-dir", help="where the built-in speech is kept")
    p.add_argument("--lead-in", type=float, default=0.5, metavar="S",
                   help="silence before the speech (default 0.5 s; raise it when the target answers "
                        "before its agent is connected)")
    p.add_argument("--answer-timeout", type=float, default=30.0, metavar="S")
    p.add_argument("--workdir", help="keep the recordings and worker logs in this directory")
    p.add_argument("--json", action="store_true", help="print one JSON object (calls, summary, verdict)")
    p.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    p.add_argument("--min-pesq-margin", type=float, default=0.3,
                   help="verdict: median PESQ at most this far below the codec's ceiling (default 0.3)")
    p.add_argument("--ceiling", choices=("single", "tandem"), default="single",
                   help="verdict: against the codec once (default) or twice, as in a loop whose far end "
                        "decodes and re-encodes (same for G.711, lower for G.722)")
    p.add_argument("--max-rtt-ms", type=float, default=150.0, help="verdict: median round trip (default 150)")
    p.add_argument("--max-setup-ms", type=float, default=2000.0, help="verdict: median setup time (default 2000)")
    p.add_argument("--max-failed", type=int, default=0, help="verdict: calls allowed to fail (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--verbose", action="store_true", help="log what the tester does on stderr")
    p.set_defaults(func=cmd_loopback)
    return p


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _sweep_lines(sweep: list[dict[str, Any]]) -> list[str]:
    """One line per sweep step."""
    lines = []
    for row in sweep:
        measured = "" if row.get("loss_measured_pct") is None else f" ({row['loss_measured_pct']:.1f} % measured)"
        silent = "" if row.get("pesq_silent_gaps") is None else f", gaps left silent {row['pesq_silent_gaps']:.2f}"
        lines.append(f"step {row['step']}/{len(sweep)}: loss {row['loss_pct']:g} %{measured}, jitter "
                     f"{row['jitter_ms']:g} ms: PESQ {_f(row['pesq_median'], '.2f')} (ceiling "
                     f"{_f(row['pesq_ceiling'], '.2f')}{silent}), round trip {_f(row['rtt_ms_median'], '.0f')} ms "
                     f"(max {_f(row['rtt_max_ms_median'], '.0f')}), impaired {_f(row['impaired_pct_median'], '.1f')} "
                     f"%, {row['failed']}/{row['calls']} failed" + (f": {row['error']}" if row.get("error") else ""))
    return lines


def _human(result: dict[str, Any]) -> str:
    s, f = result["summary"], _f
    sweep = result.get("sweep")
    lines = [f"{s['target']}: {s['calls']} call(s), {s['codec']} ({s['pesq_mode']})"
             + (f" in {len(sweep)} steps" if sweep else ""),
             f"{'#':>4} {'answer':>6} {'setup':>8} {'pdd':>8} {'rtt':>8} {'rtt max':>8} {'pesq':>6} "
             f"{'ceiling':>7} {'diff':>6} {'impaired':>8}  " + ("step  " if sweep else "") + "error"]
    for c in result["calls"]:
        impaired = f(c.get("impaired_pct"), ".1f") + " %"
        step = f"{c.get('step', '-'):>4}  " if sweep else ""
        lines.append(f"{c['id']:>4} {f(c.get('status_code'), 'd'):>6} {f(c.get('setup_ms'), '.1f'):>8} "
                     f"{f(c.get('pdd_ms'), '.1f'):>8} {f(c.get('rtt_ms'), '.1f'):>8} "
                     f"{f(c.get('rtt_max_ms'), '.1f'):>8} {f(c.get('pesq'), '.2f'):>6} "
                     f"{f(c.get('pesq_ceiling'), '.2f'):>7} {f(c.get('pesq_diff'), '+.2f'):>6} {impaired:>8}  "
                     f"{step}{c.get('error') or ''}")
    if sweep:
        lines.extend(_sweep_lines(sweep))
    if s.get("rtt_wire_ms_median") is not None:
        lines.append(f"round trip on the wire (the target alone): median {s['rtt_wire_ms_median']:.1f} ms")
    lines.append(("all steps: " if sweep else "")
                 + f"PESQ median {f(s['pesq_median'], '.2f')} (ceiling {f(s['pesq_ceiling'], '.2f')}, tandem "
                 f"{f(s['pesq_ceiling_tandem'], '.2f')}), round trip "
                 f"median {f(s['rtt_ms_median'], '.0f')} ms (p95 {f(s['rtt_ms_p95'], '.0f')}), setup median "
                 f"{f(s['setup_ms_median'], '.0f')} ms (p95 {f(s['setup_ms_p95'], '.0f')}), post-dial delay "
                 f"{f(s['pdd_ms_median'], '.0f')} ms")
    if "pesq_silent_gaps" in s:
        lines.append(f"loss {s['loss_measured_pct']:.1f} % measured: same loss offline with gaps left silent "
                     f"{f(s['pesq_silent_gaps'], '.2f')}, concealed {f(s['pesq_concealed_offline'], '.2f')}")
    lines.append(result["verdict"]["text"])
    return "\n".join(lines) + "\n"


def cmd_loopback(args: argparse.Namespace) -> int:
    from acd.loopback.relay import Impairment
    from acd.loopback.report import write_report
    from acd.loopback.runner import LoopbackOptions, Thresholds, run_loopback, run_sweep, sweep_steps

    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    concurrency = args.concurrency if args.concurrency is not None else min(args.calls, 4)
    opts = LoopbackOptions(
        target=args.target, calls=args.calls, rate=args.rate, duration=args.duration, user=args.user,
        password=args.password, codec=args.codec, concurrency=concurrency,
        impairment=Impairment(args.loss, args.jitter, args.impair, args.seed), bind=args.bind,
        reference=args.reference, cache_dir=args.cache_dir, lead_s=args.lead_in,
        answer_timeout=args.answer_timeout, workdir=args.workdir, wire=args.wire,
        thresholds=Thresholds(args.min_pesq_margin, args.ceiling, args.max_rtt_ms, args.max_setup_ms,
                              args.max_failed))
    progress = None if args.quiet else sys.stderr.write
    sweeping = args.sweep_loss is not None or args.sweep_jitter is not None
    steps = sweep_steps(opts.impairment, args.sweep_loss or (), args.sweep_jitter or ()) if sweeping else []
    try:
        if sweeping:
            result = run_sweep(opts, steps, progress, parallel=args.sweep_parallel)
        else:
            result = run_loopback(opts, progress=progress)
    except (RuntimeError, OSError) as exc:  # a worker that cannot start, a port, a file
        sys.stderr.write(f"error: {exc}\n")
        return 1
    if args.report:
        write_report(result, args.report)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(_human(result))
    return 0 if result["verdict"]["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acd")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["loopback", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
