"""Audio helpers for the integration tests (numpy + stdlib ``wave`` only).

All analysis functions take float samples in [-1, 1] (as returned by
:func:`read_wav`) and a sample rate in Hz.  Everything is vectorised; no
Python-level loops over samples.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import Tuple, Union

import numpy as np

PathLike = Union[str, "Path"]

__all__ = [
    "write_tone_wav",
    "write_wav",
    "read_wav",
    "dominant_frequency",
    "tone_snr_db",
    "tone_present",
    "tone_fraction",
    "rms_dbfs",
    "xcorr_delay",
]

# Anything quieter than this (dBFS, per-sample magnitude) counts as silence when
# trimming leading silence.  Matches roughly one LSB-ish level of a 16 bit
# recording after codec noise.
_SILENCE_DBFS = -50.0


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def write_wav(path: PathLike, samples: np.ndarray, rate: int = 8000) -> str:
    """Write float samples in [-1, 1] as a 16-bit mono PCM WAV. Returns path."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())
    return str(path)


def write_tone_wav(
    path: PathLike,
    freq_hz: float,
    seconds: float,
    rate: int = 8000,
    amplitude: float = 0.3,
) -> str:
    """Write a pure sine tone as a 16-bit mono PCM WAV (pjsua can play it). Returns path."""
    n = int(round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / float(rate)
    return write_wav(path, amplitude * np.sin(2.0 * np.pi * float(freq_hz) * t), rate)


def read_wav(path: PathLike) -> Tuple[np.ndarray, int]:
    """Read a PCM WAV (8/16/24/32 bit, any channel count; channels are averaged).

    Returns ``(samples float32 in [-1, 1], rate)``.
    """
    with wave.open(str(path), "rb") as w:
        nch = w.getnchannels()
        width = w.getsampwidth()
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:  # pragma: no cover - exotic
        raise ValueError(f"unsupported sample width {width}")
    if nch > 1:
        x = x[: (len(x) // nch) * nch].reshape(-1, nch).mean(axis=1)
    return x.astype(np.float32, copy=False), int(rate)


def _trim_leading_silence(x: np.ndarray, threshold_dbfs: float = _SILENCE_DBFS) -> np.ndarray:
    if x.size == 0:
        return x
    thr = 10.0 ** (threshold_dbfs / 20.0)
    loud = np.flatnonzero(np.abs(x) > thr)
    if loud.size == 0:
        return x[:0]
    return x[loud[0]:]


def dominant_frequency(samples: np.ndarray, rate: int, skip_s: float = 0.5) -> float:
    """Frequency (Hz) of the strongest spectral peak.

    Skips the first ``skip_s`` seconds, then any remaining leading silence,
    applies a Hann window, zero-pads to >= 4x length (power of two), and refines
    the peak bin with parabolic interpolation on the log magnitude (exact for a
    Gaussian-ish main lobe; error well under 0.1 bin for a Hann window).
    Returns 0.0 for silence or too-short input.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    x = x[int(max(0.0, skip_s) * rate):]
    x = _trim_leading_silence(x)
    if x.size < 32:
        return 0.0
    x = x - x.mean()
    if not np.any(x):
        return 0.0
    nfft = _next_pow2(4 * x.size)
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size), nfft))
    mag[0] = 0.0  # ignore DC
    k = int(np.argmax(mag))
    if mag[k] <= 0.0:
        return 0.0
    delta = 0.0
    if 0 < k < mag.size - 1:
        a, b, c = np.log(np.maximum(mag[k - 1:k + 2], 1e-300))
        den = a - 2.0 * b + c
        if den < 0.0:
            delta = 0.5 * (a - c) / den
    return float((k + delta) * rate / nfft)


def tone_snr_db(
    samples: np.ndarray,
    rate: int,
    freq: float,
    tolerance_hz: float = 15.0,
    skip_s: float = 0.0,
) -> float:
    """Energy within ``freq ± tolerance_hz`` versus the energy everywhere else, in dB.

    The band is widened by the Hann main-lobe half width (2 bins) so that short
    inputs are not penalised for spectral leakage.  DC (< 20 Hz) is excluded
    from both.  Returns ``-inf`` when there is no energy in the band.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    x = x[int(max(0.0, skip_s) * rate):]
    if x.size < 32:
        return float("-inf")
    x = x - x.mean()
    nfft = _next_pow2(x.size)
    power = np.abs(np.fft.rfft(x * np.hanning(x.size), nfft)) ** 2
    freqs = np.arange(power.size) * (rate / nfft)
    half = tolerance_hz + 2.0 * rate / nfft
    in_band = np.abs(freqs - freq) <= half
    valid = freqs >= 20.0
    sig = float(power[in_band & valid].sum())
    rest = float(power[~in_band & valid].sum())
    if sig <= 0.0:
        return float("-inf")
    if rest <= 0.0:
        return float("inf")
    return 10.0 * math.log10(sig / rest)


def tone_present(
    samples: np.ndarray,
    rate: int,
    freq: float,
    tolerance_hz: float = 15.0,
    min_snr_db: float = 20.0,
    skip_s: float = 0.0,
) -> bool:
    """True when a tone at ``freq`` dominates the signal by at least ``min_snr_db``."""
    return tone_snr_db(samples, rate, freq, tolerance_hz, skip_s) >= min_snr_db


def tone_fraction(
    samples: np.ndarray,
    rate: int,
    freq: float,
    block_s: float = 0.25,
    tolerance_hz: float = 15.0,
    min_snr_db: float = 20.0,
) -> float:
    """Fraction (0..1) of consecutive ``block_s`` blocks in which the tone is present.

    More robust than one global :func:`tone_present` for audio that crossed a
    network: a single glitch (jitter-buffer underrun, PLC, stream restart on
    re-INVITE, RFC 4733 DTMF replacing audio) only spoils its own block.  Also
    handy to check *when* a tone was heard (e.g. music on hold).
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    n = int(block_s * rate)
    nblocks = x.size // n if n > 0 else 0
    if nblocks == 0:
        return 0.0
    blocks = x[: nblocks * n].reshape(nblocks, n)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    nfft = _next_pow2(n)
    power = np.abs(np.fft.rfft(blocks * np.hanning(n), nfft, axis=1)) ** 2
    freqs = np.arange(power.shape[1]) * (rate / nfft)
    in_band = np.abs(freqs - freq) <= tolerance_hz + 2.0 * rate / nfft
    valid = freqs >= 20.0
    sig = power[:, in_band & valid].sum(axis=1)
    rest = power[:, ~in_band & valid].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = 10.0 * np.log10(sig / rest)
    snr = np.where(sig > 0.0, np.nan_to_num(snr, nan=-np.inf, posinf=np.inf), -np.inf)
    return float(np.mean(snr >= min_snr_db))


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS (full-scale sine = -3 dBFS); ``-inf`` for digital silence/empty."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return float("-inf")
    rms = math.sqrt(float(np.mean(x * x)))
    if rms <= 0.0:
        return float("-inf")
    return 20.0 * math.log10(rms)


def xcorr_delay(
    ref: np.ndarray,
    rec: np.ndarray,
    rate: int,
    max_delay_s: float = 1.0,
) -> Tuple[float, float]:
    """Delay of ``rec`` relative to ``ref`` by FFT cross-correlation.

    Returns ``(delay_s, peak_normalised)``: ``delay_s > 0`` means ``rec`` lags
    ``ref``; the search is limited to ``|delay| <= max_delay_s``.  The peak is
    refined to sub-sample precision with parabolic interpolation.
    ``peak_normalised`` is the correlation at the peak divided by
    ``||ref|| * ||rec||`` (1.0 for identical signals, ~0 for unrelated ones).
    """
    a = np.asarray(ref, dtype=np.float64).reshape(-1)
    b = np.asarray(rec, dtype=np.float64).reshape(-1)
    if a.size == 0 or b.size == 0:
        return 0.0, 0.0
    a = a - a.mean()
    b = b - b.mean()
    norm = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if norm <= 0.0:
        return 0.0, 0.0
    nfft = _next_pow2(a.size + b.size - 1)
    # corr[k] = sum_n a[n] * b[n + k]  (k >= 0 at the front, k < 0 wrapped to the back)
    corr = np.fft.irfft(np.conj(np.fft.rfft(a, nfft)) * np.fft.rfft(b, nfft), nfft)
    max_lag = int(min(max_delay_s * rate, b.size - 1, nfft // 2 - 1))
    neg_lag = int(min(max_delay_s * rate, a.size - 1, nfft // 2 - 1))
    lags = np.concatenate([np.arange(-neg_lag, 0), np.arange(0, max_lag + 1)])
    vals = corr[lags % nfft]
    i = int(np.argmax(vals))
    peak = float(vals[i])
    delta = 0.0
    if 0 < i < vals.size - 1:
        y0, y1, y2 = vals[i - 1], vals[i], vals[i + 1]
        den = y0 - 2.0 * y1 + y2
        if den < 0.0:
            delta = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return float((lags[i] + delta) / rate), peak / norm


def peak_hz(x: np.ndarray, rate: int) -> float:
    """Strongest frequency, Hann window, zero-padded x8, parabolic refinement."""
    x = x.astype(np.float64)
    nfft = 1 << int(math.ceil(math.log2(8 * x.size)))
    mag = np.log(np.abs(np.fft.rfft(x * np.hanning(x.size), nfft)) + 1e-12)
    k = int(np.argmax(mag[1:])) + 1
    a, b, c = mag[k - 1: k + 2]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / nfft
