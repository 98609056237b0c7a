#!/usr/bin/env python3
"""Codec and resampler cost: microseconds per 20 ms frame, median of several timed runs.

Each figure is one call on one 20 ms frame of speech (espeak-ng, or a synthetic vibrato
voice when espeak-ng is missing), through the stateful objects the media engine uses
(encoders and decoders keep state across frames, decoders include their loss-concealment
bookkeeping). Opus's cost depends on the mode its encoder picks for the signal (hybrid
SILK+CELT for speech at 32 kbit/s), which is why real speech is used.
Target for later tuning: G.711 encode + decode <= 10 us per frame.

    .venv/bin/python bench/codec_bench.py [--runs 7] [--seconds 0.2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from media.codecs import make_codec  # noqa: E402
from media.resample import Resampler, resample_file_rate  # noqa: E402



_SPEECH: list[np.ndarray] = []


def speech_or_voice(rate: int) -> tuple[np.ndarray, str]:
    """One second or more of espeak-ng speech at ``rate``, else the synthetic voice."""
    exe = shutil.which("espeak-ng")
    if exe and not _SPEECH:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.wav"
            text = "Thank you for calling. All our agents are busy; please stay on the line."
            subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
            with wave.open(str(path)) as w:
                _SPEECH.append(np.frombuffer(w.readframes(w.getnframes()), np.int16))
                _SPEECH.append(np.array(w.getframerate()))
    if not _SPEECH:
        return voice(rate), "synthetic voice"
    x = resample_file_rate(_SPEECH[0], int(_SPEECH[1]), rate)
    return x[: len(x) // (rate // 50) * (rate // 50)], "espeak-ng speech"


def voice(rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * (120 * t - 10 / (2 * np.pi * 4) * np.cos(2 * np.pi * 4 * t))
    x = sum(4000 / k * np.sin(k * phase) for k in range(1, 20)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x += np.random.default_rng(1).normal(0, 300, t.size)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def cycler(items: list) -> Callable[[], object]:
    """A zero-argument callable returning the next item each call (round robin)."""
    it: Iterator = iter(())
    state = {"it": it}

    def nxt() -> object:
        try:
            return next(state["it"])
        except StopIteration:
            state["it"] = iter(items)
            return next(state["it"])
    return nxt


def per_call_us(fn: Callable[[], object], runs: int, seconds: float) -> float:
    """Median over ``runs`` of the mean time of one call, in microseconds."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    return statistics.median(timer.repeat(repeat=runs, number=number)) / number * 1e6


def bench_codec(label: str, runs: int, seconds: float, **options: object) -> tuple[str, float, float]:
    enc = make_codec(**options)  # type: ignore[arg-type]
    frames = list(speech_or_voice(enc.sample_rate)[0].reshape(-1, enc.frame_samples))
    payloads = [enc.encode(f) for f in frames]
    next_frame, next_payload = cycler(frames), cycler(payloads)
    e = make_codec(**options)  # type: ignore[arg-type]
    d = make_codec(**options)  # type: ignore[arg-type]
    enc_us = per_call_us(lambda: e.encode(next_frame()), runs, seconds)  # type: ignore[arg-type]
    dec_us = per_call_us(lambda: d.decode(next_payload()), runs, seconds)  # type: ignore[arg-type]
    size = statistics.mean(len(p) for p in payloads)
    return f"{label} ({size:.0f} B/frame)", enc_us, dec_us


def bench_resampler(in_rate: int, out_rate: int, steady: bool, runs: int, seconds: float) -> float:
    r = Resampler(in_rate, out_rate, steady=steady)
    next_frame = cycler(list(speech_or_voice(in_rate)[0].reshape(-1, in_rate // 50)))
    return per_call_us(lambda: r.process(next_frame()), runs, seconds)  # type: ignore[arg-type]


def overhead_us(runs: int, seconds: float) -> float:
    next_frame = cycler(list(range(50)))
    return per_call_us(lambda: next_frame(), runs, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs; the median is reported")
    ap.add_argument("--seconds", type=float, default=0.2, help="length of one timed run")
    args = ap.parse_args()
    runs, secs = args.runs, args.seconds

    base = overhead_us(runs, secs)
    source = speech_or_voice(8000)[1]
    print(f"per 20 ms frame of {source}, median of {runs} runs (harness overhead {base:.2f} us included)\n")
    print(f"{'codec':38s} {'encode us':>10s} {'decode us':>10s} {'enc+dec us':>11s}")
    rows = [
        bench_codec("PCMU", runs, secs, name="PCMU"),
        bench_codec("PCMA", runs, secs, name="PCMA"),
        bench_codec("G722", runs, secs, name="G722"),
        bench_codec("opus 48k, default complexity", runs, secs, name="opus"),
        bench_codec("opus 48k, complexity 5", runs, secs, name="opus", complexity=5),
        bench_codec("opus 16k, default complexity", runs, secs, name="opus", sample_rate=16000),
    ]
    for label, enc_us, dec_us in rows:
        print(f"{label:38s} {enc_us:10.1f} {dec_us:10.1f} {enc_us + dec_us:11.1f}")
    g711 = rows[0][1] + rows[0][2]
    print(f"\nG.711 (PCMU) encode+decode: {g711:.1f} us per frame (target <= 10 us): "
          f"{'met' if g711 <= 10 else 'NOT met'}")

    print(f"\n{'resampler (HQ)':38s} {'fixed us':>10s} {'steady us':>10s}")
    for a, b in ((8000, 48000), (48000, 8000), (8000, 16000), (16000, 8000), (16000, 48000), (48000, 16000)):
        fixed = bench_resampler(a, b, False, runs, secs)
        steady = bench_resampler(a, b, True, runs, secs)
        print(f"{f'{a // 1000}k -> {b // 1000}k':38s} {fixed:10.1f} {steady:10.1f}")


if __name__ == "__main__":
    main()
