#!/usr/bin/env python3
"""Media engine benchmark (prints figures; not a timed test).

1. Microseconds per 20 ms frame: each codec's encode and decode, jitter buffer put+get, RTP
   parse and build, the mixer per participant, and a whole echo leg per frame (receive, jitter
   buffer, decode, encode, packetize).
2. Capacity: how many G.711 echo streams one core carries with < 0.1 % late or lost frames,
   for the media engine's echo (bench/echo_engine.py) and, in the same run, a plain asyncio
   reflector (bench/echo_baseline.py). The echo process is pinned to CPU 0 and the load
   generator (bench/rtp_load.py) to CPU 1.

Targets for later tuning: G.711 encode+decode <= 10 us per frame; >= 2,000 echo streams per core.

    .venv/bin/python bench/media_bench.py [--streams 50,100,200,400,800] [--seconds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from codec_bench import bench_codec  # noqa: E402
from media.jitter import JitterBuffer  # noqa: E402
from media.mixer import benchmark as mixer_benchmark  # noqa: E402
from media.rtp import RtpPacket, parse  # noqa: E402
from media.stream import AudioStream, StreamParams  # noqa: E402

PY = sys.executable
CLK = os.sysconf("SC_CLK_TCK")


def per_call_us(fn, runs: int = 5, number: int = 2000) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=runs)) / number * 1e6


def micro() -> None:
    print("\n1. microseconds per 20 ms frame (median of 5 runs)")
    for label, options in (("PCMU", {"name": "PCMU"}), ("PCMA", {"name": "PCMA"}), ("G722", {"name": "G722"}),
                           ("opus 48k", {"name": "opus"}), ("opus 48k c5", {"name": "opus", "complexity": 5})):
        name, enc, dec = bench_codec(label, 5, 0.2, **options)
        print(f"  {name:<28} encode {enc:7.1f}   decode {dec:7.1f}   both {enc + dec:7.1f}")
    pkt = RtpPacket(0, 1, 160, 0x1234, b"\xd5" * 160, marker=True)
    data = pkt.to_bytes()
    print(f"  {'RTP parse':<28} {per_call_us(lambda: parse(data)):7.2f}")
    print(f"  {'RTP build':<28} {per_call_us(pkt.to_bytes):7.2f}")
    jb = JitterBuffer(clock_rate=8000, ptime_ms=20)
    state = {"k": 0}

    def put_get() -> None:
        k = state["k"]
        state["k"] = k + 1
        jb.put(RtpPacket(0, k & 0xFFFF, (160 * k) & 0xFFFFFFFF, 7, b"\xd5" * 160), k * 0.02)
        jb.get(k * 0.02 + 0.02)

    print(f"  {'jitter buffer put+get':<28} {per_call_us(put_get, number=20000):7.2f}")
    print(f"  {'mixer, per participant (10)':<28} {mixer_benchmark(participants=10, ticks=500):7.2f}")
    leg = AudioStream(StreamParams(0, "PCMU"), 0.0, rng=random.Random(1))
    state2 = {"k": 0}

    def echo_leg() -> None:
        k = state2["k"]
        state2["k"] = k + 1
        now = k * 0.02
        leg.receive_rtp(RtpPacket(0, k & 0xFFFF, (160 * k) & 0xFFFFFFFF, 7, b"\x90" * 160), now)
        leg.send(leg.playout(now + 0.02), now + 0.02)

    print(f"  {'echo leg (rx+jb+dec+enc+tx)':<28} {per_call_us(echo_leg, number=5000):7.2f}")
    print("  target: G.711 encode+decode <= 10 us per frame")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def run_capacity(kind: str, streams: int, seconds: float, base: int) -> dict:
    script = ROOT / "bench" / ("echo_engine.py" if kind == "engine" else "echo_baseline.py")
    extra = [] if kind == "engine" else ["--uvloop"]
    server = subprocess.Popen(["taskset", "-c", "0", PY, str(script), "--base", str(base), "--streams", str(streams),
                               *extra], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        gen = subprocess.run(["taskset", "-c", "1", PY, str(ROOT / "bench" / "rtp_load.py"), "--ports",
                              f"{base}-{base + 2 * streams - 2}", "--seconds", str(seconds), "--json"],
                             capture_output=True, text=True, timeout=seconds + 60)
        cpu = cpu_seconds(server.pid) - cpu0
        wall = time.monotonic() - t0
        result = json.loads(gen.stdout.strip().splitlines()[-1])
        result["server_cpu_pct"] = 100 * cpu / wall
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            out, _ = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            out = ""
    if kind == "engine" and out.strip():
        counters = json.loads(out.strip().splitlines()[-1])
        result["late_ticks"] = counters.get("late_ticks", 0)
        result["ticks"] = counters.get("ticks", 0)
    return result


def capacity(sizes: list[int], seconds: float) -> None:
    print("\n2. G.711 echo streams on one core (< 0.1 % of frames late (> 100 ms) or lost)")
    best: dict[str, int] = {}
    base = 20000
    for kind in ("baseline", "engine"):
        title = ("plain asyncio reflector (uvloop), no parsing" if kind == "baseline"
                 else "media engine echo: RTP endpoint, jitter buffer, decode, encode, RTCP")
        print(f"  {title}")
        print(f"  {'streams':>8} {'late+lost %':>12} {'rtt p50':>8} {'rtt p99':>8} {'server cpu':>11} {'late ticks':>11}")
        best[kind] = 0
        for n in sizes:
            r = run_capacity(kind, n, seconds, base)
            ticks = f"{r.get('late_ticks', '-')}/{r.get('ticks', '-')}" if kind == "engine" else "-"
            print(f"  {n:>8} {r['late_or_lost_pct']:>12.3f} {r['rtt_p50_ms']:>8.1f} {r['rtt_p99_ms']:>8.1f} "
                  f"{r['server_cpu_pct']:>10.0f}% {ticks:>11}", flush=True)
            if r["late_or_lost_pct"] < 0.1:
                best[kind] = n
            else:
                break
            time.sleep(1)
    print(f"  highest passing: media engine {best['engine']} streams, plain reflector {best['baseline']} "
          f"streams (target for later tuning: >= 2,000 per core)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="50,100,200,300,400,600,800,1200")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--skip-micro", action="store_true")
    args = ap.parse_args()
    if not args.skip_micro:
        micro()
    capacity([int(x) for x in args.streams.split(",")], args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
