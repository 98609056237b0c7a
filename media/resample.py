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
* ``steady=True`` at an integer ratio (8↔16↔48 kHz, mono): :class:`media.polyphase.PolyphaseFIR`,
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

import logging

import numpy as np
import soxr

from media.polyphase import PolyphaseFIR, integer_ratio

__all__ = ["Resampler", "resample_file_rate", "QUALITIES"]

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
