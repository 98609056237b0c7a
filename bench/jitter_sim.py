#!/usr/bin/env python3
"""Jitter buffer under simulated networks: playout delay, late, concealed and adjustments.

Runs :class:`media.jitter.JitterBuffer` on virtual time through the network simulator of
``tests/media/test_jitter.py`` (sender clock → channel → receiver clock) for several network
profiles and prints, per profile:

- delay: the buffer's playout delay behind the fastest packets (``current_delay_ms``), mean and
  95th percentile after the first 10 s, and the mean target;
- wait: how long played packets actually sat in the buffer (mean);
- late %: packets that arrived after their playout time, of those received;
- conc %: frames concealed (PLC) for a missing packet, of the frames played or concealed;
  lost %: missing at playout and never arrived, of the same;
- ins/drop: frames inserted / dropped to move the delay (drift, spikes);
- jitter: the RFC 3550 estimate; µs/pkt: CPU per put+get, simulator included.

Not a timed test: read the figures.

    .venv/bin/python bench/jitter_sim.py [--seconds 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from media.jitter import JitterConfig  # noqa: E402
from tests.media.test_jitter import Profile, SimResult, simulate  # noqa: E402

PROFILES: dict[str, tuple[Profile, JitterConfig | None, float | None]] = {
    # name: (profile, config or default, seconds or --seconds)
    "clean LAN": (Profile(base_ms=2.0), None, None),
    "wired WAN, σ 5 ms": (Profile(jitter_ms=5.0, fifo=True), None, None),
    "wifi, σ 10 ms + spikes": (Profile(jitter_ms=10.0, spike_prob=0.02, spike_ms=30.0), None, None),
    "4G, σ 30 ms + spikes + 1% loss": (Profile(base_ms=60.0, jitter_ms=30.0, spike_prob=0.03, spike_ms=30.0,
                                                loss=0.01), None, None),
    "5% random loss": (Profile(loss=0.05), None, None),
    "bursty loss (Gilbert-Elliott)": (Profile(gilbert=(0.02, 0.4), jitter_ms=3.0), None, None),
    "reorder 5% + duplicate 2%": (Profile(reorder=0.05, duplicate=0.02, jitter_ms=3.0), None, None),
    "200 ms spike for 1 s (max 300)": (Profile(plateau=(20.0, 1.0, 200.0), fifo=True),
                                       JitterConfig(max_delay_ms=300.0), None),
    "drift +0.1% (sender fast), 5 min": (Profile(drift=0.001, jitter_ms=2.0), None, 300.0),
    "drift -0.1% (sender slow), 5 min": (Profile(drift=-0.001, jitter_ms=2.0), None, 300.0),
    "DTX 1 s talk / 1 s silence": (Profile(dtx=tuple((2.0 * k + 1.0, 2.0 * k + 2.0) for k in range(200)),
                                           jitter_ms=5.0), None, None),
    "far end ptime 60 ms, σ 10 ms": (Profile(remote_ptime_ms=60.0, jitter_ms=10.0, tell_samples=True), None, None),
}


def figures(r: SimResult, seconds: float, elapsed: float) -> str:
    s = r.jb.stats
    steady = [(d, tg) for t, d, tg in r.delays if t > 10.0] or [(d, tg) for _, d, tg in r.delays]
    delays = sorted(d for d, _ in steady)
    p95 = delays[int(0.95 * (len(delays) - 1))]
    unique = s["received"] - s["duplicate"]
    frames = max(1, s["played"] + s["concealed"])  # frames of the stream that reached their playout time
    wait = statistics.mean(ms for _, ms in r.residence) if r.residence else 0.0
    calls = s["received"] + len(r.frames)
    return (f"{statistics.mean(d for d, _ in steady):6.1f} {p95:6.1f} {statistics.mean(t for _, t in steady):6.1f}"
            f" {wait:6.1f} {100.0 * s['late'] / max(1, unique):6.2f} {100.0 * s['concealed'] / frames:6.2f}"
            f" {100.0 * s['lost'] / frames:6.2f} {s['inserted']:5d} {s['dropped_catchup']:5d}"
            f" {r.jb.jitter_ms:6.1f} {1e6 * elapsed / max(1, calls) * 2:6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"{'profile':36s} {'delay':>6s} {'p95':>6s} {'target':>6s} {'wait':>6s} {'late%':>6s} {'conc%':>6s}"
          f" {'lost%':>6s} {'ins':>5s} {'drop':>5s} {'jitter':>6s} {'µs/pkt':>6s}")
    for name, (profile, cfg, secs) in PROFILES.items():
        seconds = secs or args.seconds
        t0 = time.process_time()
        r = simulate(profile, seconds, cfg, seed=args.seed, hints=True)
        print(f"{name:36s} {figures(r, seconds, time.process_time() - t0)}")


if __name__ == "__main__":
    main()
