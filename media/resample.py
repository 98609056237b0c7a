"""Sample-rate conversion with libsoxr (the ``soxr`` package).

:class:`Resampler` is a stream resampler: one object per direction of one stream, fed
frame by frame. It keeps the polyphase filter's state between calls (``soxr.ResampleStream``),
so that a stream converted in 20 ms blocks is the same signal as the whole signal converted
at once; a stateless resample per block would restart the filter on every block and click
at each boundary.

Three engines, picked by ``steady`` and the rates:

* ``steady=False`` (default): soxr's fixed-rate engine at ``quality``. Its output is
  aligned with its input (no delay inside the signal) and equals :func:`resample_file_rate`
  of the whole signal sample for sample (measured: 0 LSB), but it filters in FFT blocks:
  20 ms in gives nothing for several blocks and then a burst. The samples held back
  (:attr:`Resampler.latency`) peak at 175 ms for 8→48 kHz, 157 ms for 48→8, 115 ms for
  8↔16, 37 ms for 16↔48 (HQ, 20 ms blocks, measured; about half that on average). Right
  for prompts, recordings and anything not played live.
* ``steady=True`` at an integer ratio (8↔16↔48 kHz, mono): :class:`PolyphaseFIR`,
  a linear-phase polyphase filter holding back only its group delay (2.1 ms for 16↔48 kHz,
  4.3 ms for 8↔48 and 8↔16 kHz), every block giving its exact share of output, ≥ 80 dB
  against aliases and images, flat to 85 % of the lower rate's Nyquist frequency.
* ``steady=True`` otherwise (44.1↔48 kHz …): soxr's variable-rate engine (python-soxr marks
  it experimental). Every 20 ms in gives 20 ms out after a constant hold-back (measured:
  5.4 ms for 44.1→48 kHz, 5.0 ms for 48→44.1, 7.5 ms for 32→48; 12.5–30 ms at the integer
  ratios above, which is why those use the polyphase filter); its filter is not
  linear-phase (group delay ≤ 0.3 ms), ``quality`` is ignored, the passband is as flat
  (±0.01 dB to 3.6 kHz at 8 kHz) and aliases/images are as far down (> 90 dB) as HQ's, and
  it costs 3–10× the CPU. Right for live audio whose consumer wants a frame per frame.

soxr runs in float32 here: its int16 mode adds TPDF dither from a free-running generator,
which makes the output differ by ±2 LSB from run to run; in float32 the result is
deterministic and rounded once, to nearest.

Either way the output of one :meth:`Resampler.process` is not always exactly
``len × out/in`` samples; callers that need fixed-size frames re-frame the output.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import soxr
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Resampler", "resample_file_rate", "QUALITIES", "PolyphaseFIR", "integer_ratio"]

log = logging.getLogger(__name__)

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")  # libsoxr quality recipes
_SCALE_IN = np.float32(1 / 32768)


def _to_int16(y: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 in [-1, 1) → int16, rounded to nearest; also how many samples clipped."""
    y = np.rint(y * np.float32(32768))
    clipped = int(np.count_nonzero((y > 32767) | (y < -32768)))
    return np.clip(y, -32768, 32767).astype(np.int16), clipped


def _check_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 384000:
        raise ValueError(f"sample rate must be an int in 1000..384000, not {rate!r}")
    return rate


def _check_pcm(pcm: np.ndarray, channels: int) -> np.ndarray:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise ValueError("PCM must be an int16 numpy array")
    if channels == 1 and pcm.ndim != 1:
        raise ValueError("mono PCM must be 1-D")
    if channels > 1 and (pcm.ndim != 2 or pcm.shape[1] != channels):
        raise ValueError(f"{channels}-channel PCM must be 2-D (frames, {channels})")
    return np.ascontiguousarray(pcm)


# ------------------------------------------------------------------ low-delay integer ratios
# A linear-phase Kaiser-windowed sinc run as a polyphase interpolator (up by L) or decimator
# (down by M), state kept between blocks: passband flat to 85 % of the lower rate's Nyquist
# frequency, >= 80 dB down from it on (aliases and images). The output is aligned with the
# input (the group delay is dropped from the start), so ``delay`` is the only hold-back.

PASS_FRACTION = 0.85  # passband edge, fraction of the lower rate's Nyquist frequency
ATTENUATION_DB = 80.0  # stopband from the lower rate's Nyquist frequency on


def integer_ratio(in_rate: int, out_rate: int) -> int | None:
    """The integer factor between the two rates (up or down), or None (1 counts as None)."""
    hi, lo = max(in_rate, out_rate), min(in_rate, out_rate)
    return hi // lo if hi % lo == 0 and hi != lo else None


@functools.lru_cache(maxsize=32)
def design_lowpass(low_rate: int, factor: int) -> np.ndarray:
    """Kaiser-windowed sinc at ``low_rate × factor``; odd length with (N-1)/2 a multiple of factor.

    Kaiser's estimates (A = attenuation in dB, Δω the transition width in rad/sample):
    β = 0.1102 (A − 8.7), N ≈ (A − 8) / (2.285 Δω).
    """
    high = low_rate * factor
    f_pass, f_stop = PASS_FRACTION * low_rate / 2, low_rate / 2
    width = 2 * math.pi * (f_stop - f_pass) / high
    n = math.ceil((ATTENUATION_DB - 8) / (2.285 * width))
    half = math.ceil((n - 1) / 2 / factor) * factor  # (N-1)/2, a whole number of low-rate samples
    n = 2 * half + 1
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    fc = (f_pass + f_stop) / 2 / high  # cycles per sample
    k = np.arange(n) - half
    h = 2 * fc * np.sinc(2 * fc * k) * np.kaiser(n, beta)
    h /= h.sum()  # unity gain at DC
    h.setflags(write=False)
    return h


class PolyphaseFIR:
    """Stateful mono int16 → float resampler for ``out/in`` or ``in/out`` an integer."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        factor = integer_ratio(in_rate, out_rate)
        if factor is None:
            raise ValueError(f"{in_rate} → {out_rate} Hz is not an integer ratio")
        self.in_rate, self.out_rate, self.factor = in_rate, out_rate, factor
        self.up = out_rate > in_rate
        h = design_lowpass(min(in_rate, out_rate), factor)
        self.taps = len(h)
        half = (self.taps - 1) // 2
        if self.up:
            # phase p filter: h[p + L·j]; a window of K inputs (oldest first) times the reversed phases
            k = math.ceil(self.taps / factor)
            padded = np.zeros(k * factor)
            padded[:self.taps] = h * factor  # zero-stuffing divides the gain by L
            self._matrix = padded.reshape(k, factor)[::-1].astype(np.float32)  # (K, L)
            self._hist = k - 1
            self._delay = half  # output samples
        else:
            self._kernel = h[::-1].astype(np.float32)
            self._hist = self.taps - 1
            self._delay = half // factor
        self._buf = np.zeros(self._hist, np.float32)
        self._skip = self._delay

    @property
    def delay(self) -> int:
        """Output samples the filter holds back (its group delay at the output rate)."""
        return self._delay

    def reset(self) -> None:
        self._buf = np.zeros(self._hist, np.float32)
        self._skip = self._delay

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter the next block (float32 or int16 samples); returns float32 at the output rate."""
        buf = np.concatenate([self._buf, np.asarray(x, np.float32)])
        if self.up:
            if len(buf) <= self._hist:
                self._buf = buf
                return np.empty(0, np.float32)
            y = (sliding_window_view(buf, self._hist + 1) @ self._matrix).reshape(-1)
            self._buf = buf[len(buf) - self._hist:]
        else:
            m = self.factor
            count = (len(buf) - self._hist + m - 1) // m if len(buf) > self._hist else 0
            if count == 0:
                self._buf = buf
                return np.empty(0, np.float32)
            rows = sliding_window_view(buf, self.taps)[:(count - 1) * m + 1:m]
            y = rows @ self._kernel
            self._buf = buf[count * m:]
        if self._skip:
            cut = min(self._skip, len(y))
            y, self._skip = y[cut:], self._skip - cut
        return y

    def drain(self, count: int) -> np.ndarray:
        """The next ``count`` output samples with silence fed in: the held-back tail at the end."""
        if count <= 0:
            return np.empty(0, np.float32)
        zeros = math.ceil(count / self.factor) + 1 if self.up else (count + 1) * self.factor
        return self.process(np.zeros(zeros, np.float32))[:count]


class Resampler:
    """Stateful int16 stream resampler ``in_rate`` → ``out_rate`` (mono 1-D, or 2-D frames × channels)."""

    def __init__(self, in_rate: int, out_rate: int, *, channels: int = 1, quality: str = "HQ",
                 steady: bool = False) -> None:
        self.in_rate, self.out_rate = _check_rate(in_rate), _check_rate(out_rate)
        if not 1 <= channels <= 8:
            raise ValueError(f"channels must be 1..8, not {channels}")
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, not {quality!r}")
        self.channels, self.quality, self.steady = channels, quality, bool(steady)
        self._fir = PolyphaseFIR(in_rate, out_rate) \
            if self.steady and channels == 1 and integer_ratio(in_rate, out_rate) else None
        self._stream = None if in_rate == out_rate or self._fir is not None else soxr.ResampleStream(
            in_rate, out_rate, channels, dtype="float32", quality=quality, vr=self.steady)
        self._clips = 0
        self._flushed = False
        self._in = 0  # input samples (per channel) consumed
        self._out = 0  # output samples produced

    @property
    def latency(self) -> float:
        """Output samples owed for the input consumed so far (the stream's current delay)."""
        return self._in * self.out_rate / self.in_rate - self._out

    @property
    def clips(self) -> int:
        """Output samples clipped to int16 so far (a ringing filter on a full-scale input)."""
        return self._clips

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Resample the next block of the stream; the output may be a few samples short or long."""
        if self._flushed:
            raise ValueError("Resampler already flushed; call reset() to start a new stream")
        pcm = _check_pcm(pcm, self.channels)
        self._in += pcm.shape[0]
        if self._fir is not None:
            out = self._to_int16(self._fir.process(pcm) * _SCALE_IN)
        elif self._stream is None:
            out = pcm.copy()
        else:
            out = self._to_int16(self._stream.resample_chunk(pcm.astype(np.float32) * _SCALE_IN))
        self._out += out.shape[0]
        return out

    def _to_int16(self, y: np.ndarray) -> np.ndarray:
        out, clipped = _to_int16(y)
        self._clips += clipped
        return out

    def flush(self) -> np.ndarray:
        """End the stream: return the samples still held back (the resampler is then spent)."""
        if self._flushed:
            raise ValueError("Resampler already flushed")
        self._flushed = True
        shape = (0,) if self.channels == 1 else (0, self.channels)
        if self._fir is not None:
            out = self._to_int16(self._fir.drain(round(self.latency)) * _SCALE_IN)
            self._out += out.shape[0]
            return out
        if self._stream is None:
            return np.empty(shape, np.int16)
        out = self._to_int16(self._stream.resample_chunk(np.empty(shape, np.float32), last=True))
        self._out += out.shape[0]
        return out

    def reset(self) -> None:
        """Start a new stream with the same rates."""
        if self._stream is not None:
            self._stream.clear()
        if self._fir is not None:
            self._fir.reset()
        self._flushed = False
        self._clips = 0
        self._in = self._out = 0


def resample_file_rate(pcm: np.ndarray, in_rate: int, out_rate: int, *, quality: str = "HQ") -> np.ndarray:
    """Resample a whole int16 signal at once (prompts, recordings); not for streams."""
    _check_rate(in_rate), _check_rate(out_rate)
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, not {quality!r}")
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim not in (1, 2):
        raise ValueError("PCM must be a 1-D or 2-D int16 numpy array")
    if in_rate == out_rate:
        return pcm.copy()
    return _to_int16(soxr.resample(pcm.astype(np.float32) * _SCALE_IN, in_rate, out_rate, quality=quality))[0]
