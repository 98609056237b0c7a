"""``acd loopback`` itself: place calls through pjsua2 worker processes, then measure them.

The controller (asyncio) starts ``ceil(C / 4)`` workers (``python -m acd.loopback.worker``,
at most four calls each), places N calls at R calls per second with at most C in progress,
and collects each call's SIP timings. With ``--loss``/``--jitter`` a :class:`SipRelay` runs
in this process and the workers use it as their outbound proxy. When every call has ended the
recordings are analysed in a process pool (PESQ is CPU-bound; doing it after the calls keeps
it from disturbing their timing), and the result is one dict: ``calls``, ``summary``,
``verdict`` (see :func:`run_loopback`). :func:`run_sweep` does that once per impairment step
(``--sweep-loss``/``--sweep-jitter``) and adds a row per step (``sweep``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from acd.loopback.measure import (CodecSpec, analyse_recording, ceiling_score, codec_spec, gap_score,
                                  load_reference, reference_speech, wire_round_trip)
from acd.loopback.relay import Impairment, SipRelay

__all__ = ["LoopbackOptions", "Thresholds", "run_loopback", "summarise", "judge", "run_sweep", "sweep_steps",
           "combine_sweep"]

log = logging.getLogger(__name__)

MAX_CALLS_PER_WORKER = 4
TAIL_S = 0.5  # silence played after the speech, so that its echo is recorded whole
_READY_TIMEOUT_S = 20.0


@dataclass
class Thresholds:
    """The verdict's limits."""

    min_pesq_margin: float = 0.3  # median PESQ may be at most this far below the ceiling
    ceiling: str = "single"  # judge against the codec once ("single") or twice ("tandem")
    max_rtt_ms: float = 150.0  # median round trip
    max_setup_ms: float = 2000.0  # median INVITE -> 200
    max_failed: int = 0  # calls not answered or not measured


@dataclass
class LoopbackOptions:
    """Everything ``acd loopback`` needs; see ``acd loopback --help``."""

    target: str
    calls: int = 1
    rate: float = 1.0  # new calls per second
    duration: float | None = None  # talk time; default: lead + reference + tail
    user: str | None = None
    password: str | None = None
    codec: str = "pcmu"
    concurrency: int = 1
    impairment: Impairment = field(default_factory=Impairment)
    bind: str | None = None  # local address; default: the one that routes to the target
    reference: str | None = None  # a 16-bit WAV instead of the built-in speech
    cache_dir: str | None = None
    lead_s: float = 0.5  # silence before the speech (a queue may answer before its agent)
    answer_timeout: float = 30.0
    max_delay_s: float = 1.0  # longest round trip searched for
    workdir: str | None = None  # keep recordings and worker logs here
    wire: bool = False  # relay RTP even without impairment, for the round trip on the wire
    thresholds: Thresholds = field(default_factory=Thresholds)

    def check(self) -> None:
        if self.calls < 1 or self.concurrency < 1 or self.rate <= 0:
            raise ValueError("--calls and --concurrency must be >= 1 and --rate > 0")
        if not re.match(r"^sips?:", self.target):
            raise ValueError(f"target {self.target!r} is not a SIP URI (sip:user@host[:port])")
        if (self.impairment.active or self.wire) and re.search(r";transport=(tcp|tls)", self.target, re.I):
            raise ValueError("--loss/--jitter/--wire go through a UDP relay: the target must be reached over UDP")
        codec_spec(self.codec)


def local_address(target: str) -> str:
    """The local IP the kernel would use to reach the target's host (no packet is sent)."""
    m = re.search(r"sips?:(?:[^@;>]*@)?(\[[^\]]+\]|[^:;>?]+)", target)
    host = m.group(1).strip("[]") if m else "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((socket.gethostbyname(host), 5060))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _median(values: list[float]) -> float | None:
    return round(float(statistics.median(values)), 3) if values else None


def _p95(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 95)), 1) if values else None


# ------------------------------------------------------------------------------ workers


class _Worker:
    """One worker process and the calls it has in progress."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.active: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.sip_port = 0

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def read_events(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            fut = self.active.get(event.get("id", -1))
            if event.get("event") == "done" and fut is not None and not fut.done():
                fut.set_result(event)
        for call_id, fut in self.active.items():
            if not fut.done():
                fut.set_result({"id": call_id, "answered": False,
                                "error": f"worker {self.index} exited ({self.proc.returncode})"})


class _Progress:
    """One status line on stderr: rewritten in place on a terminal, a line per call otherwise."""

    def __init__(self, total: int, out: Callable[[str], None] | None, prefix: str = "") -> None:
        self.total = total
        self.out = out
        self.prefix = prefix  # "step 2/4: " when sweep steps run at once (then a line per call)
        self.placed = self.done = self.failed = 0
        self.tty = out is not None and not prefix and sys.stderr.isatty()

    def show(self, final: bool = False) -> None:
        if self.out is None or (final and not self.tty):
            return
        text = (f"loopback: {self.prefix}{self.done}/{self.total} calls done, {self.placed - self.done} in "
                f"progress, {self.failed} failed")
        self.out(("\r" + text + ("\n" if final else "")) if self.tty else text + "\n")


def tester_jitter_buffer_ms(imp: Impairment) -> int:
    """Our own (pjsua's) jitter buffer start: 30 ms, plus — when the relay impairs what we
    receive — a frame, so that the packet after a lost one is in before the lost one is due
    (else pjsua takes the gap for an underflow and moves its timeline), and the relay's
    longest hold (2 × jitter). The tester must not score its own buffer."""
    if imp.direction == "send" or (imp.loss_pct <= 0 and imp.jitter_ms <= 0):
        return 30
    return int(30 + (20 if imp.loss_pct > 0 else 0) + 2 * imp.jitter_ms)


async def _start_worker(i: int, opts: LoopbackOptions, bind: str, proxy: str | None, workdir: Path) -> _Worker:
    args = [sys.executable, "-m", "acd.loopback.worker", "--bind", bind, "--codec", opts.codec,
            "--answer-timeout", str(opts.answer_timeout), "--jb-ms", str(tester_jitter_buffer_ms(opts.impairment))]
    if opts.user:
        args += ["--user", opts.user]
    if opts.password is not None:
        args += ["--password", opts.password]
    if proxy:
        args += ["--proxy", proxy]
    with open(workdir / f"worker-{i}.log", "wb") as errlog:
        proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=errlog,
                                                    cwd=str(Path(__file__).resolve().parents[2]))
    worker = _Worker(i, proc)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), _READY_TIMEOUT_S)
        ready = json.loads(line) if line else {}
    except (asyncio.TimeoutError, json.JSONDecodeError):
        ready = {}
    if ready.get("event") != "ready":
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"pjsua2 worker {i} did not start: see {workdir / f'worker-{i}.log'}")
    worker.sip_port = int(ready["sip_port"])
    return worker


async def _stop_workers(workers: list[_Worker], at_once: bool) -> None:
    """Ask the workers to quit once their calls have ended, or (``at_once``, SIGTERM) now."""
    for w in workers:
        if w.proc.returncode is not None:
            continue
        try:
            if at_once:
                w.proc.terminate()
            else:
                await w.send({"op": "quit"})
        except (BrokenPipeError, ConnectionResetError, ProcessLookupError):
            pass
    for w in workers:
        try:
            await asyncio.wait_for(w.proc.wait(), 10.0)
        except asyncio.TimeoutError:
            log.warning("worker %d did not quit: killed", w.index)
            w.proc.kill()
            await w.proc.wait()


async def _place_calls(opts: LoopbackOptions, play: Path, duration: float, workdir: Path,
                       progress: _Progress) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    imp = opts.impairment
    bind = opts.bind or local_address(opts.target)
    relay = SipRelay(bind, imp) if imp.active or opts.wire else None
    if relay is not None:
        relay.start()
    nworkers = math.ceil(min(opts.concurrency, opts.calls) / MAX_CALLS_PER_WORKER)
    started = await asyncio.gather(*[_start_worker(i, opts, bind, relay.uri if relay else None, workdir)
                                     for i in range(nworkers)], return_exceptions=True)
    workers = [w for w in started if isinstance(w, _Worker)]
    failed = [e for e in started if isinstance(e, BaseException)]
    if failed:
        await _stop_workers(workers, at_once=True)
        if relay is not None:
            relay.close()
        raise failed[0]
    readers = [asyncio.ensure_future(w.read_events()) for w in workers]
    if relay is not None:
        for w in workers:
            relay.add_worker((bind, w.sip_port))
    slots = asyncio.Semaphore(min(opts.concurrency, nworkers * MAX_CALLS_PER_WORKER))
    results: list[dict[str, Any]] = []
    guard = duration + opts.answer_timeout + 20.0  # a call the worker never reports

    async def one(i: int, worker: _Worker, fut: asyncio.Future[dict[str, Any]]) -> None:
        try:
            res = await asyncio.wait_for(fut, guard)
        except asyncio.TimeoutError:
            res = {"id": i, "answered": False, "error": f"no result from worker {worker.index} in {guard:.0f} s"}
        finally:
            worker.active.pop(i, None)
            slots.release()
        res["worker"] = worker.index
        if relay is not None and res.get("call_id"):
            res["relay"] = relay.counts(res["call_id"])
            res["capture"] = relay.release(res["call_id"])
        results.append(res)
        progress.done += 1
        progress.failed += 0 if res.get("answered") and res.get("record") else 1
        progress.show()

    t0 = time.monotonic()
    tasks = []
    finished = False
    try:
        for i in range(opts.calls):
            await asyncio.sleep(max(0.0, t0 + i / opts.rate - time.monotonic()))
            await slots.acquire()
            worker = min(workers, key=lambda w: len(w.active))
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            worker.active[i] = fut
            try:
                await worker.send({"op": "call", "id": i, "uri": opts.target, "play": str(play),
                                   "record": str(workdir / f"call-{i}.wav"), "duration": duration})
            except (BrokenPipeError, ConnectionResetError):
                fut.set_result({"id": i, "answered": False, "error": f"worker {worker.index} is gone"})
            progress.placed += 1
            progress.show()
            tasks.append(asyncio.ensure_future(one(i, worker, fut)))
        await asyncio.gather(*tasks)
        finished = True
    finally:
        await _stop_workers(workers, at_once=not finished)  # interrupted: hang up now
        await asyncio.gather(*readers, return_exceptions=True)
        if relay is not None:
            relay.close()
    progress.show(final=True)
    return sorted(results, key=lambda r: r["id"]), ({"sip_forwarded": relay.stats["forwarded"]} if relay else {})


# ------------------------------------------------------------------------------ analysis


def _lost_fraction(calls: list[dict[str, Any]], imp: Impairment) -> float | None:
    """The share of RTP the relay really dropped on the way there and back (the echo carries
    both directions' losses)."""
    sent = {"up": 0, "down": 0}
    dropped = {"up": 0, "down": 0}
    for c in calls:
        for d in ("up", "down"):
            counts = (c.get("relay") or {}).get(d) or {}
            sent[d] += counts.get("packets", 0)
            dropped[d] += counts.get("dropped", 0)
    if not sent["up"] and not sent["down"]:
        return None
    up = dropped["up"] / sent["up"] if sent["up"] else 0.0
    down = dropped["down"] / sent["down"] if sent["down"] else 0.0
    return 1.0 - (1.0 - up) * (1.0 - down)


def summarise(calls: list[dict[str, Any]], spec: CodecSpec, opts: LoopbackOptions) -> dict[str, Any]:
    """Medians and percentiles over the measured calls."""
    measured = [c for c in calls if c.get("pesq") is not None]
    pesq = [c["pesq"] for c in measured]
    ceilings = [c["pesq_ceiling"] for c in measured if c.get("pesq_ceiling") is not None]
    tandem = [c["pesq_ceiling_tandem"] for c in measured if c.get("pesq_ceiling_tandem") is not None]
    diffs = [c["pesq_diff"] for c in measured if c.get("pesq_diff") is not None]
    rtt = [c["rtt_ms"] for c in calls if c.get("rtt_ms") is not None]
    setup = [c["setup_ms"] for c in calls if c.get("setup_ms") is not None]
    pdd = [c["pdd_ms"] for c in calls if c.get("pdd_ms") is not None]
    impaired = [c["impaired_pct"] for c in calls if c.get("impaired_pct") is not None]
    return {
        "target": opts.target, "codec": spec.sdp_name, "pesq_mode": "P.862 narrowband" if spec.mode == "nb"
        else "P.862.2 wideband", "calls": len(calls), "answered": sum(1 for c in calls if c.get("answered")),
        "measured": len(measured), "failed": len(calls) - len(measured),
        "pesq_median": _median(pesq), "pesq_min": min(pesq) if pesq else None,
        "pesq_ceiling": _median(ceilings), "pesq_diff_median": _median(diffs),
        "pesq_ceiling_tandem": _median(tandem),
        "rtt_ms_median": _median(rtt), "rtt_ms_p95": _p95(rtt),
        "rtt_wire_ms_median": _median([c["rtt_wire_ms"] for c in calls if c.get("rtt_wire_ms") is not None]),
        "rtt_max_ms": max((c["rtt_max_ms"] for c in calls if c.get("rtt_max_ms") is not None), default=None),
        "setup_ms_median": _median(setup), "setup_ms_p95": _p95(setup), "pdd_ms_median": _median(pdd),
        "impaired_pct_median": _median(impaired),
        "loss_pct": opts.impairment.loss_pct, "jitter_ms": opts.impairment.jitter_ms,
        "impair_direction": opts.impairment.direction if opts.impairment.active else None,
    }


def judge(summary: dict[str, Any], th: Thresholds) -> dict[str, Any]:
    """The one-line verdict and its reasons."""
    reasons = []
    ceiling = summary.get("pesq_ceiling_tandem" if th.ceiling == "tandem" else "pesq_ceiling")
    what = "tandem ceiling" if th.ceiling == "tandem" else "ceiling"
    diff = None if summary.get("pesq_median") is None or ceiling is None else summary["pesq_median"] - ceiling
    if diff is None:
        reasons.append("no call could be scored")
    elif -diff > th.min_pesq_margin:
        reasons.append(f"PESQ {-diff:.2f} below the codec's {what} (limit {th.min_pesq_margin:g})")
    rtt = summary.get("rtt_ms_median")
    if rtt is not None and rtt > th.max_rtt_ms:
        reasons.append(f"round trip {rtt:.0f} ms > {th.max_rtt_ms:g} ms")
    setup = summary.get("setup_ms_median")
    if setup is not None and setup > th.max_setup_ms:
        reasons.append(f"setup {setup:.0f} ms > {th.max_setup_ms:g} ms")
    if summary["failed"] > th.max_failed:
        reasons.append(f"{summary['failed']} of {summary['calls']} calls failed (limit {th.max_failed})")
    ok = not reasons
    if ok:
        text = (f"PASS: {summary['measured']}/{summary['calls']} calls measured, PESQ {summary['pesq_median']:.2f} "
                f"vs {what} {ceiling:.2f} ({diff:+.2f}), round trip {rtt:.0f} ms, setup {setup:.0f} ms")
    else:
        text = "FAIL: " + "; ".join(reasons)
    return {"ok": ok, "text": text, "reasons": reasons, "thresholds": asdict(th)}


def _analyse_call(record: str, capture: dict[str, Any] | None, ref: np.ndarray, lead: int, spec: CodecSpec,
                  max_delay_s: float) -> dict[str, Any]:
    out = analyse_recording(record, ref, lead, spec, max_delay_s)
    if capture is not None:
        out["rtt_wire_ms"] = wire_round_trip(capture, spec, max_delay_s)
    return out


def _analyse(calls: list[dict[str, Any]], ref: np.ndarray, spec: CodecSpec, opts: LoopbackOptions) -> None:
    lead = int(opts.lead_s * spec.rate)
    todo = [c for c in calls if c.get("record")]
    if todo:
        with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            futures = [pool.submit(_analyse_call, c["record"], c.get("capture"), ref, lead, spec, opts.max_delay_s)
                       for c in todo]
            for c, fut in zip(todo, futures):
                c.update(fut.result())
    for c in calls:
        c.pop("capture", None)
    ceilings: dict[int, float | None] = {}
    tandem: dict[int, float | None] = {}
    for c in calls:
        if not c.get("answered") and not c.get("error"):
            c["error"] = "not answered"
        n = int(c.get("compared_samples") or 0)
        if c.get("pesq") is None:
            c.setdefault("pesq", None)
            c["pesq_ceiling"] = c["pesq_diff"] = c["pesq_ceiling_tandem"] = None
            continue
        if n not in ceilings:
            ceilings[n] = ceiling_score(ref[:n], spec)
            tandem[n] = ceilings[n] if spec.mode == "nb" else ceiling_score(ref[:n], spec, passes=2)
        c["pesq_ceiling"], c["pesq_ceiling_tandem"] = ceilings[n], tandem[n]
        c["pesq_diff"] = None if ceilings[n] is None else round(c["pesq"] - ceilings[n], 3)
        c.setdefault("rtt_ms", None)


@dataclass
class _Prepared:
    """What one run (or one sweep step) plays and where it keeps its files."""

    spec: CodecSpec
    ref: np.ndarray
    ref_path: Path
    workdir: Path
    keep: bool
    play: Path
    duration: float
    started: float


def _prepare(opts: LoopbackOptions) -> _Prepared:
    opts.check()
    spec = codec_spec(opts.codec)
    ref_path = Path(opts.reference) if opts.reference else reference_speech(opts.cache_dir)
    ref = load_reference(ref_path, spec.rate)
    from media.prompt_build import write_wav

    keep = opts.workdir is not None
    workdir = (Path(opts.workdir) if keep else Path(tempfile.mkdtemp(prefix="homeline-loopback-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lead = int(opts.lead_s * spec.rate)
    play = write_wav(workdir / "play.wav", np.concatenate((np.zeros(lead, np.int16), ref,
                                                          np.zeros(int(TAIL_S * spec.rate), np.int16))), spec.rate)
    duration = opts.duration if opts.duration is not None else opts.lead_s + len(ref) / spec.rate + TAIL_S
    return _Prepared(spec, ref, ref_path, workdir, keep, play, duration, time.time())


def _finish(opts: LoopbackOptions, prep: _Prepared, calls: list[dict[str, Any]], extra: dict[str, Any],
            progress: Callable[[str], None] | None) -> dict[str, Any]:
    """Analyse the recordings of finished calls and build the result (removes a temporary workdir)."""
    spec, ref = prep.spec, prep.ref
    try:
        if progress is not None:
            progress(f"loopback: analysing {sum(1 for c in calls if c.get('record'))} recordings\n")
        _analyse(calls, ref, spec, opts)
        summary = summarise(calls, spec, opts)
        summary.update(extra, duration_s=round(prep.duration, 2), elapsed_s=round(time.time() - prep.started, 1),
                       reference=str(prep.ref_path), reference_s=round(len(ref) / spec.rate, 2))
        if opts.impairment.loss_pct > 0 and summary["measured"]:
            frac = _lost_fraction(calls, opts.impairment)
            n = int(statistics.median(c["compared_samples"] for c in calls if c.get("pesq") is not None))
            if frac is not None:
                summary["loss_measured_pct"] = round(100 * frac, 2)
                summary["pesq_silent_gaps"] = gap_score(ref[:n], spec, frac, conceal=False)
                summary["pesq_concealed_offline"] = gap_score(ref[:n], spec, frac, conceal=True)
    finally:
        if not prep.keep:
            shutil.rmtree(prep.workdir, ignore_errors=True)
    for c in calls:
        if not prep.keep:
            c["record"] = None
        c.pop("event", None)
    return {"calls": calls, "summary": summary, "verdict": judge(summary, opts.thresholds),
            "workdir": str(prep.workdir) if prep.keep else None}


def run_loopback(opts: LoopbackOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Place the calls, measure them, and return ``{"calls", "summary", "verdict", ...}``."""
    prep = _prepare(opts)
    try:
        calls, extra = asyncio.run(_place_calls(opts, prep.play, prep.duration, prep.workdir,
                                                _Progress(opts.calls, progress)))
    except BaseException:
        if not prep.keep:
            shutil.rmtree(prep.workdir, ignore_errors=True)
        raise
    return _finish(opts, prep, calls, extra, progress)


# ------------------------------------------------------------------------------ sweep


def sweep_steps(base: Impairment, loss: Sequence[float] = (), jitter: Sequence[float] = ()) -> list[Impairment]:
    """The loss steps (jitter as in ``base``), then the jitter steps (loss as in ``base``): not a
    cross product; a step already listed is not run twice."""
    seen: set[tuple[float, float]] = set()
    steps = []
    for pair in [(float(x), base.jitter_ms) for x in loss] + [(base.loss_pct, float(x)) for x in jitter]:
        if pair not in seen:
            seen.add(pair)
            steps.append(Impairment(pair[0], pair[1], base.direction, base.seed))
    if not steps:
        raise ValueError("a sweep needs at least one loss or jitter step")
    return steps


def describe_step(imp: Impairment) -> str:
    """``loss 5 %``, ``jitter 40 ms`` or both."""
    parts = [f"loss {imp.loss_pct:g} %"] if imp.loss_pct > 0 or imp.jitter_ms == 0 else []
    if imp.jitter_ms > 0:
        parts.append(f"jitter {imp.jitter_ms:g} ms")
    return ", ".join(parts)


def _failed_step(opts: LoopbackOptions, exc: BaseException) -> dict[str, Any]:
    """A step that could not be run: its calls all failed, with the reason."""
    calls = [{"id": i, "answered": False, "pesq": None, "error": f"step not run: {exc}"} for i in range(opts.calls)]
    summary = summarise(calls, codec_spec(opts.codec), opts)
    return {"calls": calls, "summary": summary, "verdict": judge(summary, opts.thresholds), "workdir": None,
            "error": str(exc)}


def _step_row(k: int, imp: Impairment, res: dict[str, Any]) -> dict[str, Any]:
    s, calls = res["summary"], res["calls"]
    loss_measured = s.get("loss_measured_pct")
    if loss_measured is None:
        frac = _lost_fraction(calls, imp)  # also 0 % through the relay (jitter only)
        loss_measured = None if frac is None else round(100 * frac, 2)
    rtt_max = [c["rtt_max_ms"] for c in calls if c.get("rtt_max_ms") is not None]
    return {"step": k, "loss_pct": imp.loss_pct, "jitter_ms": imp.jitter_ms, "calls": s["calls"],
            "failed": s["failed"], "pesq_median": s.get("pesq_median"), "pesq_ceiling": s.get("pesq_ceiling"),
            "pesq_ceiling_tandem": s.get("pesq_ceiling_tandem"),
            "pesq_silent_gaps": s.get("pesq_silent_gaps") if imp.loss_pct > 0 else None,
            "pesq_concealed_offline": s.get("pesq_concealed_offline") if imp.loss_pct > 0 else None,
            "rtt_ms_median": s.get("rtt_ms_median"), "rtt_max_ms_median": _median(rtt_max),
            "impaired_pct_median": s.get("impaired_pct_median"), "loss_measured_pct": loss_measured,
            "error": res.get("error")}


def combine_sweep(steps: list[tuple[Impairment, dict[str, Any]]], opts: LoopbackOptions) -> dict[str, Any]:
    """One result from the results of the sweep's steps (in order): every call, tagged with its
    step's ``loss_pct``/``jitter_ms`` and numbered anew; the summary over all of them; a row
    per step in ``sweep``; the verdict of the least impaired step."""
    if not steps:
        raise ValueError("a sweep needs at least one step")
    calls: list[dict[str, Any]] = []
    rows = []
    for k, (imp, res) in enumerate(steps, 1):
        for c in res["calls"]:
            calls.append(dict(c, id=len(calls), step=k, step_call=c["id"], loss_pct=imp.loss_pct,
                              jitter_ms=imp.jitter_ms))
        rows.append(_step_row(k, imp, res))
    summary = summarise(calls, codec_spec(opts.codec), opts)
    first = steps[0][1]["summary"]
    summary.update({key: first[key] for key in ("duration_s", "reference", "reference_s") if key in first})
    summary["impair_direction"] = opts.impairment.direction
    summary["sweep"] = rows
    least = min(range(len(steps)), key=lambda i: (steps[i][0].loss_pct, steps[i][0].jitter_ms))
    verdict = judge(steps[least][1]["summary"], opts.thresholds)
    verdict["step"] = least + 1
    verdict["text"] += f" (on step {least + 1}, the least impaired: {describe_step(steps[least][0])})"
    return {"calls": calls, "summary": summary, "verdict": verdict, "sweep": rows,
            "workdir": None if opts.workdir is None else str(Path(opts.workdir).resolve())}


async def _place_batch(batch: list[tuple[LoopbackOptions, _Prepared, _Progress]]) -> list[Any]:
    return await asyncio.gather(*[_place_calls(o, p.play, p.duration, p.workdir, pr) for o, p, pr in batch],
                                return_exceptions=True)


def run_sweep(opts: LoopbackOptions, steps: list[Impairment], progress: Callable[[str], None] | None = None,
              parallel: int = 1) -> dict[str, Any]:
    """Run the calls of ``opts`` once per impairment step and return :func:`combine_sweep`.

    ``parallel`` steps run at once (each with its own relay and workers: the target sees
    ``parallel`` × ``concurrency`` calls); their recordings are analysed once all their calls
    have ended. A step that cannot be run has all its calls failed; when no step can, the
    first error is raised."""
    if not steps:
        raise ValueError("a sweep needs at least one step")
    if parallel < 1:
        raise ValueError("--sweep-parallel must be >= 1")
    n = len(steps)
    step_opts = [replace(opts, impairment=imp, workdir=None if opts.workdir is None
                         else str(Path(opts.workdir) / f"step-{k}")) for k, imp in enumerate(steps, 1)]
    for o in step_opts:
        o.check()
    started = time.time()
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    for first in range(0, n, parallel):
        ks = range(first, min(n, first + parallel))
        batch: list[tuple[LoopbackOptions, _Prepared, _Progress]] = []
        try:
            for k in ks:
                log.info("sweep step %d/%d: loss %g %%, jitter %g ms", k + 1, n, steps[k].loss_pct, steps[k].jitter_ms)
                if progress is not None:
                    progress(f"loopback: step {k + 1}/{n}, {describe_step(steps[k])}\n")
                prefix = f"step {k + 1}/{n}: " if len(ks) > 1 else ""
                batch.append((step_opts[k], _prepare(step_opts[k]), _Progress(opts.calls, progress, prefix)))
            placed = asyncio.run(_place_batch(batch))
            for out in placed:
                if isinstance(out, BaseException) and not isinstance(out, (RuntimeError, OSError)):
                    raise out
            for (o, prep, _), out in zip(batch, placed):
                if isinstance(out, BaseException):  # a worker that cannot start, a port
                    log.warning("sweep step %s failed: %s", describe_step(o.impairment), out)
                    errors.append(out)
                    results.append(_failed_step(o, out))
                else:
                    results.append(_finish(o, prep, out[0], out[1], progress))
        finally:
            for _, prep, _ in batch:
                if not prep.keep:
                    shutil.rmtree(prep.workdir, ignore_errors=True)
    if len(errors) == n:
        raise errors[0]
    result = combine_sweep(list(zip(steps, results)), opts)
    result["summary"]["elapsed_s"] = round(time.time() - started, 1)
    return result
