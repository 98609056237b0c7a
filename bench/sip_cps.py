#!/usr/bin/env python3
"""SIP call-rate benchmark: sipp's built-in uac scenario into the echo test at rising rates.

Prints, per rate, the calls completed and failed and the server's CPU per call, then the
highest rate with zero failed calls. Not a timed test: read the figures. The server runs
with uvloop on one core's worth of Python (one process); sipp runs on the other core.

    .venv/bin/python bench/sip_cps.py [--rates 50,100,200,300,400] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import free_port, start_server  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def run_rate(pid: int, port: int, rate: int, seconds: float, workdir: Path) -> dict:
    calls = max(20, int(rate * seconds))
    cwd = workdir / f"r{rate}-{port}"
    cwd.mkdir()
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    out = subprocess.run(
        ["sipp", f"127.0.0.1:{port}", "-sn", "uac", "-s", "echo", "-m", str(calls), "-r", str(rate),
         "-l", str(max(rate * 2, 50)), "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin",
         "-timeout", str(int(seconds * 4 + 20)), "-trace_stat", "-fd", "1"],
        cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    stats = sorted(cwd.glob("*_.csv"))
    row: dict[str, str] = {}
    if stats:
        lines = stats[-1].read_text().splitlines()
        row = dict(zip(lines[0].split(";"), lines[-1].split(";")))
    ok = int(row.get("SuccessfulCall(C)", 0))
    return {"rate": rate, "calls": calls, "ok": ok, "failed": max(0, calls - ok), "wall_s": wall,
            "achieved_cps": ok / wall if wall else 0.0, "cpu_ms_per_call": 1000 * cpu / max(ok, 1),
            "server_cpu_pct": 100 * cpu / wall if wall else 0.0, "sipp_rc": out.returncode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="50,100,200,300,400,500,600,800")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "srv").mkdir()
        rates = [int(r) for r in args.rates.split(",")]
        # baseline in the same run: sipp's own UAS (C++, no media) under the same load
        port = free_port()
        uas = subprocess.Popen(["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-nostdin"],
                               cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            base = sweep("baseline: sipp -sn uas", uas.pid, port, rates, args.seconds, work)
        finally:
            uas.kill()
        # info level, as in production: one log line per call event is part of the cost
        server = start_server(work / "srv", transports=("udp",), log_level="info", rtp_ports=4000)
        try:
            best = sweep("Homeline echo test (SDP negotiation, RTP port, echo socket per call)",
                         server.proc.pid, server.sip_port, rates, args.seconds, work)
            st = server.status()
            print("server counters:", {k: v for k, v in {**st["sip"], **st["transport"]}.items() if v})
        finally:
            server.stop(signal.SIGTERM)
        print(f"\nhighest rate sustained (>= 90 % achieved, zero failed calls): Homeline {best} calls/s, "
              f"sipp uas baseline {base} calls/s (target for later tuning: >= 300)")
    return 0


def sweep(title: str, pid: int, port: int, rates: list[int], seconds: float, work: Path) -> int:
    print(f"\n{title}")
    print(f"{'rate':>6} {'calls':>6} {'ok':>6} {'failed':>6} {'cps':>8} {'cpu ms/call':>12} {'cpu':>6}")
    best = 0
    for rate in rates:
        r = run_rate(pid, port, rate, seconds, work)
        print(f"{r['rate']:>6} {r['calls']:>6} {r['ok']:>6} {r['failed']:>6} {r['achieved_cps']:>8.1f} "
              f"{r['cpu_ms_per_call']:>12.2f} {r['server_cpu_pct']:>5.0f}%", flush=True)
        if r["failed"] == 0 and r["achieved_cps"] >= 0.9 * rate:
            best = max(best, rate)
        elif r["failed"]:
            break
        time.sleep(1.0)
    return best


if __name__ == "__main__":
    sys.exit(main())
