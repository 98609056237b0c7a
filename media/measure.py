"""Signal measurements used by the server and testers: dominant frequency, level, and the
delay between a reference and its echo (FFT cross-correlation). numpy only."""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

__all__ = ["dominant_frequency", "level_dbfs", "echo_delay", "AudioTap"]

log = logging.getLogger(__name__)


def _float(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    return x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level relative to a full-scale square wave (−inf for digital silence)."""
    x = _float(samples)
    rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency (Hann window, parabolic interpolation on the log spectrum)."""
    x = _float(samples)
    if len(x) < 64 or not np.any(x):
        return 0.0
    n = 1 << int(np.ceil(np.log2(len(x) * 2)))
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)), n))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return float((k + offset) * rate / n)


def echo_delay(reference: np.ndarray, echo: np.ndarray, rate: int, max_delay_s: float = 1.0
               ) -> tuple[float, float]:
    """(delay in seconds, normalised correlation peak) of ``echo`` against ``reference``."""
    ref, rec = _float(reference), _float(echo)
    n = 1 << int(np.ceil(np.log2(len(ref) + len(rec))))
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    limit = min(int(max_delay_s * rate), len(rec))
    lag = int(np.argmax(corr[:limit]))
    norm = float(np.sqrt(np.sum(ref * ref) * np.sum(rec * rec))) or 1.0
    return lag / rate, float(corr[lag] / norm)


class AudioTap:
    """Keeps the last ``seconds`` of a stream's frames for measuring at the end of a call."""

    def __init__(self, rate: int, seconds: float = 10.0, frame_samples: int = 160) -> None:
        self.rate = rate
        self.frames: deque[np.ndarray] = deque(maxlen=max(1, int(seconds * rate / frame_samples)))

    def __call__(self, frame: np.ndarray, now: float) -> None:
        self.frames.append(frame)

    def samples(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, dtype=np.int16)

    def summary(self, skip_s: float = 0.5) -> dict[str, float]:
        x = self.samples()[int(skip_s * self.rate):]
        return {"frequency_hz": round(dominant_frequency(x, self.rate), 1), "level_dbfs": round(level_dbfs(x), 1),
                "seconds": round(len(x) / self.rate, 2)}
