#!/usr/bin/env python3
"""Latency the softphone's audio layer (softphone/audio.py) adds, part by part, per direction.

Runs DeviceAudio on the fake device in virtual time, so the figures are the design's, not the
scheduler's: no sleeps, every run identical. Each configuration runs at several phases of the
app's 20 ms clock against the device's block clock (the phase decides the waits), 3 s each.

* capture → send: a frame's first sample waits for the frame to fill (20 ms), for the device
  block that carries the last input the resampler needs (device block), for the resampler's
  hold-back, for the app to ask (``capture()`` on a 20 ms clock, or right after each block
  when the app wakes on ``on_input``), then the Opus encode.
* receive → playout: a decoded frame's last sample waits for the Opus decode, the device block
  being played when it arrives, the queue ahead of it (the cushion against a late app tick),
  the resampler's hold-back, and the 20 ms the frame itself takes to play.

"measured" comes from markers (impulses) sent through the real code and found again in the
frames and in the device output; "sum of parts" is the model above: they must agree. Encode
and decode are CPU time measured here with opuslib (media/codecs), added to the virtual clock.
Target: at most 20 ms beyond the unavoidable 20 ms frame and one device block, each way.

    .venv/bin/python bench/softphone_latency.py [--seconds 3] [--phases 8] [--jitter-ms 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from media.codecs import make_codec  # noqa: E402
from softphone.audio import FRAME_RATE, FRAME_SAMPLES, DeviceAudio  # noqa: E402
from softphone.devices import FakeBackend, FakeDevice  # noqa: E402
from codec_bench import voice  # noqa: E402  (the synthetic vibrato voice)

FRAME_S = FRAME_SAMPLES / FRAME_RATE
CONFIGS = [(48000, 480, ""), (48000, 256, ""), (44100, 441, ""), (16000, 160, ""),
           (16000, 160, "baseline: soxr's variable-rate engine at 16 kHz, as before the polyphase filter")]
WARMUP_S = 0.5
PULSE = 16000  # peak of the marker: a 1 ms Hann bump (band-limited: survives any resampling)


def bump(rate: int) -> np.ndarray:
    w = max(3, rate // 1000) | 1
    return np.rint(PULSE * np.hanning(w + 2)[1:-1]).astype(np.int16)


def opus_costs() -> tuple[float, float, float]:
    """Opus encode and decode CPU per 20 ms frame (ms, median of 5 runs) and its algorithmic delay (ms)."""
    pcm = voice(FRAME_RATE, 2.0)
    frames = pcm[: len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    enc_runs, dec_runs, decoded = [], [], []
    for run in range(5):
        enc, dec = make_codec("opus"), make_codec("opus")
        t0 = time.perf_counter()
        payloads = [enc.encode(f) for f in frames]
        t1 = time.perf_counter()
        out = [dec.decode(p) for p in payloads]
        t2 = time.perf_counter()
        enc_runs.append((t1 - t0) / len(frames))
        dec_runs.append((t2 - t1) / len(frames))
        decoded = out
    y = np.concatenate(decoded).astype(np.float64)
    x = frames.reshape(-1).astype(np.float64)
    lags = np.arange(0, 1000)
    lag = int(lags[np.argmax([np.dot(x[: len(x) - 1000], y[k: k + len(x) - 1000]) for k in lags])])
    return 1000 * statistics.median(enc_runs), 1000 * statistics.median(dec_runs), 1000 * lag / FRAME_RATE


@dataclass
class Stats:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **parts: float) -> None:
        for k, v in parts.items():
            self.values.setdefault(k, []).append(1000 * v)

    def cell(self, key: str) -> str:
        v = self.values.get(key)
        return f"{np.mean(v):6.2f} {np.max(v):6.2f}" if v else f"{'-':>6} {'-':>6}"


def pulses(x: np.ndarray, threshold: float = PULSE / 4) -> list[int]:
    """Indexes of the pulses' peaks in ``x`` (pulses at least 100 samples apart)."""
    hot = np.flatnonzero(np.abs(x) > threshold)
    if not hot.size:
        return []
    groups = np.split(hot, np.flatnonzero(np.diff(hot) > 100) + 1)
    return [int(g[np.argmax(np.abs(x[g]))]) for g in groups]


def run(rate: int, block: int, phase: float, seconds: float, on_input: bool, jitter: float,
        enc: float, dec: float, cap: Stats, play: Stats, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    # capture markers: one pulse per 100 ms at a random place, in device samples
    marks = np.array([round((0.1 * i + 0.08 * rng.random()) * rate) for i in range(int(seconds * 10))])

    b_dev, b_48k = bump(rate), bump(FRAME_RATE)
    half = len(b_dev) // 2

    def mic(first: int, n: int) -> np.ndarray:
        x = np.zeros(n + 4 * half + 1, np.int16)  # bumps centred on the marks, across block edges
        lo, hi = np.searchsorted(marks, [first - half, first + n + half])
        for m in marks[lo:hi]:
            x[m - first + half: m - first + half + len(b_dev)] = b_dev
        return x[2 * half: 2 * half + n]

    dev = FakeDevice("bench", rate=rate, block=block, source=mic)
    backend = FakeBackend([dev])
    audio = DeviceAudio(backend=backend, supervise=False)
    stream = backend.running()[0]
    returned: list[tuple[float, np.ndarray]] = []
    sent: list[tuple[float, int, float]] = []  # (t_receive, pulse position in frame, model latency)
    t_tick, k = phase, 0
    tick = t_tick  # when this tick really happens (up to ``jitter`` late)
    h_in = 0.0
    while backend.now() < seconds:
        due = stream.due
        if due <= tick:
            backend.advance(due - backend.now())
            if on_input:  # the app wakes on each block and takes what is ready
                while (f := audio.capture()) is not None:
                    returned.append((backend.now(), f))
            continue
        backend.advance(tick - backend.now())
        audio.service()
        # receive: one decoded frame per tick, with a pulse in every 5th
        frame = np.zeros(FRAME_SAMPLES, np.int16)
        d = audio.delays()
        if k % 5 == 2:
            q = int(rng.integers(len(b_48k), FRAME_SAMPLES - len(b_48k)))
            frame[q - len(b_48k) // 2: q + len(b_48k) // 2 + 1] = b_48k
            after_h = d["playout_resampler_ms"] / 1000
            block_wait = stream.due - backend.now()
            model = dec + block_wait + d["playout_ms"] / 1000 + after_h + FRAME_S
            sent.append((backend.now(), q, model))
            if backend.now() >= WARMUP_S:
                play.add(decode=dec, block=block_wait, queue=d["playout_ms"] / 1000, resampler=after_h,
                         frame=FRAME_S, model=model)
        audio.play(frame)
        k += 1
        if not on_input:
            while (f := audio.capture()) is not None:
                returned.append((backend.now(), f))
        h_in = audio.delays()["capture_resampler_ms"] / 1000
        t_tick += FRAME_S
        tick = t_tick + (float(rng.uniform(0, jitter)) if jitter else 0.0)
    counters = audio.counters()
    backend.advance(0.3)  # let the last frames play out
    audio.close()

    # capture: each returned frame j holds output samples [960 j, 960 j + 960)
    cb_times = np.array([t for t, _, _ in dev.played])
    cb_total = np.cumsum([len(b) for _, _, b in dev.played])
    stream_out = np.concatenate([f for _, f in returned])
    for p in pulses(stream_out):
        j = p // FRAME_SAMPLES
        t_ret = returned[j][0]
        m = marks[np.argmin(np.abs(marks / rate - p / FRAME_RATE))]
        measured = t_ret - m / rate + (p - j * FRAME_SAMPLES) / FRAME_RATE + enc
        need = ((j + 1) * FRAME_SAMPLES / FRAME_RATE + h_in) * rate  # input the frame needs
        t_avail = cb_times[np.searchsorted(cb_total, need - 1e-6)]
        block_wait = t_avail - need / rate
        if t_ret < WARMUP_S:
            continue
        cap.add(frame=FRAME_S, block=block_wait, resampler=h_in, poll=t_ret - t_avail, encode=enc,
                model=FRAME_S + block_wait + h_in + (t_ret - t_avail) + enc, measured=measured)

    # playout: find each pulse in what the device played, at the time it played
    played = np.concatenate([b for _, _, b in dev.played])
    starts = np.concatenate([[0], cb_total[:-1]])
    found = pulses(played)
    assert len(found) == len(sent), f"{len(found)} pulses played of {len(sent)} sent ({counters})"
    for o, (t_r, q, _) in zip(found, sent):
        i = int(np.searchsorted(cb_total, o, side="right"))
        t_play = cb_times[i] + (o - starts[i]) / rate
        if t_r >= WARMUP_S:
            play.add(measured=t_play - t_r + (FRAME_SAMPLES - 1 - q) / FRAME_RATE + dec)
    return counters


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--phases", type=int, default=8)
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="app ticks up to this late (uniform)")
    args = ap.parse_args()
    enc, dec, codec_delay = opus_costs()
    print(f"Softphone audio latency: fake device, virtual time, {args.phases} app-clock phases x "
          f"{args.seconds:g} s, app tick jitter {args.jitter_ms:g} ms; ms, mean and max")
    print(f"Opus (opuslib, 32 kbit/s, complexity default): encode {1000 * enc:.0f} us, decode "
          f"{1000 * dec:.0f} us per 20 ms frame (CPU, measured here); its algorithmic delay "
          f"{codec_delay:.1f} ms is the codec's, not the audio layer's, and is not counted below.")
    rows = [("frame (unavoidable)", "frame"), ("device block (unavoidable)", "block"),
            ("resampler hold-back", "resampler"), ("playout queue (cushion)", "queue"),
            ("wait for the app to ask", "poll"), ("Opus encode / decode (CPU)", "encode"),
            ("sum of parts", "model"), ("measured (markers)", "measured")]
    verdicts = []
    for rate, block, baseline in CONFIGS:
        block_ms = 1000 * block / rate
        # the baseline forces soxr where the low-delay polyphase filter would serve
        engine = mock.patch("media.resample.integer_ratio", lambda a, b: None) if baseline else nullcontext()
        cols = {"capture, 20 ms app clock": (Stats(), False), "capture, on_input": (Stats(), True)}
        play = Stats()
        counts: dict[str, int] = {}
        with engine:
            for i in range(args.phases):
                for name, (stats, on_input) in cols.items():
                    sink = play if not on_input else Stats()
                    c = run(rate, block, FRAME_S * i / args.phases, args.seconds, on_input, args.jitter_ms / 1000,
                            enc / 1000, dec / 1000, stats, sink, seed=i)
                    for key in ("underflows", "dropped", "capture_dropped", "overflows"):
                        counts[key] = counts.get(key, 0) + c[key]
        print(f"\n{rate} Hz, block {block} ({block_ms:.1f} ms){' -- ' + baseline if baseline else ''}")
        heads = list(cols) + ["receive -> playout"]
        print(f"  {'part':30}" + "".join(f"{h:>22}" for h in heads))
        for label, key in rows:
            cells = [cols[h][0].cell(key if key != "encode" else "encode") for h in cols]
            cells.append(play.cell(key if key != "encode" else "decode"))
            print(f"  {label:30}" + "".join(f"{c:>22}" for c in cells))
        extra = [max(s.values["measured"]) - 20 - block_ms for s in [cols[h][0] for h in cols] + [play]]
        print(f"  {'beyond frame + block (max)':30}" + "".join(f"{e:>22.2f}" for e in extra))
        print(f"  counters over all runs: {counts}")
        if not baseline:
            verdicts += [(f"{rate}/{block} {h}", e) for h, e in zip(heads, extra)]
    worst = [(n, e) for n, e in verdicts if e > 20.0]
    print("\ntarget (<= 20 ms beyond frame + block, worst case):",
          "met everywhere" if not worst else "missed by " + ", ".join(f"{n} ({e:.1f} ms)" for n, e in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
