"""In-band DTMF: tone generation and a talk-off resistant detector (ITU-T Q.23, Q.24).

Levels are in dBm0 relative to the G.711 digital milliwatt (G.711 Tables 5 and 6): the
1 kHz sequence that decodes to 0 dBm0 has an RMS of :data:`DBM0_RMS` = 16016 in int16 units
(a sine of peak ≈ 22650, i.e. 3.17 dB below the µ-law full-scale sine). The level of a DTMF
signal is the combined power of its two tones; ``twist_db`` is high group minus low group.

The detector (:class:`GoertzelDetector`) evaluates the eight Q.23 frequencies and their second
harmonics on a sliding window (``window_ms``, advanced by ``block_ms``). The Goertzel value at
one frequency is a DFT coefficient, so a block of windows is one matrix product with a
precomputed (Hann-weighted) basis, not a per-sample recursion. Each window is classified:

- level: both tones at least ``min_level_dbm0`` (per tone);
- frequency: the strongest tone of each group within ``freq_tolerance`` of nominal (Q.24:
  ±1.5 % must be accepted, ±3.5 % rejected). The frequency is *measured* from the phase
  advance between two overlapping sub-windows, so the tolerance does not depend on the
  filter bandwidth;
- twist: the high group at most ``reverse_twist_db`` above and ``normal_twist_db`` below the
  low group (Q.24: reverse 4 dB, normal 8 dB);
- talk-off: the two tones are fitted (amplitude, phase, measured frequency) and subtracted;
  they must carry ``min_tone_ratio`` of the window's energy, the residual must hold no second
  harmonic above ``max_harmonic_db`` relative to its tone, and the two halves of the window
  must not differ by more than ``max_imbalance_db`` (a steady signal).

A digit is reported (:class:`~media.dtmf.DtmfStart`) once its windows have persisted for
about ``min_tone_ms`` (Q.24: 40 ms; with the defaults, measured at random alignments, tones
of 37.5 ms or more always pass, 35 ms ones mostly, 30 ms ones never), and ended (:class:`~media.dtmf.DtmfEnd`) after a pause of 60 %
of ``min_pause_ms`` (Q.24: 40 ms): drop-outs up to 20 ms are bridged, pauses of 25 ms or
more separate digits.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
from collections.abc import Callable

import numpy as np

from media.dtmf import DtmfEnd, DtmfEvent, DtmfStart, digit_to_event
from media.errors import MediaError

__all__ = ["DBM0_RMS", "DTMF_FREQS", "GoertzelDetector", "dtmf_tone", "generate_dtmf"]

log = logging.getLogger(__name__)

DBM0_RMS = 16016.0  # int16 RMS of the G.711 digital milliwatt (0 dBm0)
LOW_FREQS = (697.0, 770.0, 852.0, 941.0)  # Q.23 low group (rows)
HIGH_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)  # Q.23 high group (columns)
DTMF_FREQS = LOW_FREQS + HIGH_FREQS
_KEYPAD = ("123A", "456B", "789C", "*0#D")
_FREQS_OF = {_KEYPAD[r][c]: (LOW_FREQS[r], HIGH_FREQS[c]) for r in range(4) for c in range(4)}
_DIGIT_AT = np.array([[_KEYPAD[r][c] for c in range(4)] for r in range(4)])


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------
def dtmf_tone(digit: str, duration_ms: float, sample_rate: int = 8000, level_dbm0: float = -6.0,
              twist_db: float = 0.0, freq_offset: tuple[float, float] = (0.0, 0.0),
              start_sample: int = 0) -> np.ndarray:
    """One DTMF tone as int16: total power ``level_dbm0``, high minus low ``twist_db``,
    frequencies scaled by ``1 + freq_offset`` (low, high) for tolerance tests."""
    code = digit_to_event(digit)
    key = "0123456789*#ABCD"[code] if code < 16 else None
    if key is None:
        raise MediaError("flash has no in-band tone")
    f_low, f_high = _FREQS_OF[key]
    power = (DBM0_RMS * 10.0 ** (level_dbm0 / 20.0)) ** 2
    ratio = 10.0 ** (twist_db / 10.0)  # P_high / P_low
    a_low = math.sqrt(2.0 * power / (1.0 + ratio))
    a_high = math.sqrt(2.0 * power * ratio / (1.0 + ratio))
    n = int(round(duration_ms * sample_rate / 1000.0))
    t = (np.arange(n) + start_sample) / float(sample_rate)
    x = (a_low * np.sin(2 * np.pi * f_low * (1 + freq_offset[0]) * t)
         + a_high * np.sin(2 * np.pi * f_high * (1 + freq_offset[1]) * t))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def generate_dtmf(digits: str, tone_ms: float = 100.0, gap_ms: float = 100.0, sample_rate: int = 8000,
                  level_dbm0: float = -6.0, twist_db: float = 0.0, lead_ms: float = 0.0) -> np.ndarray:
    """A digit string as int16 audio: ``lead_ms`` of silence, then tone/gap for each digit."""
    def silence(ms: float) -> np.ndarray:
        return np.zeros(int(round(ms * sample_rate / 1000.0)), dtype=np.int16)

    parts = [silence(lead_ms)]
    for d in digits:
        parts += [dtmf_tone(d, tone_ms, sample_rate, level_dbm0, twist_db), silence(gap_ms)]
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------
class _St(enum.Enum):
    IDLE = "idle"
    TONE = "tone"


class GoertzelDetector:
    """Streaming DTMF detector: :meth:`feed` int16 frames of any length, get
    :class:`~media.dtmf.DtmfStart` / :class:`~media.dtmf.DtmfEnd` events (``source="inband"``,
    ``start_ts`` = index of the tone's first sample in the input)."""

    def __init__(self, sample_rate: int = 8000, block_ms: float = 2.5, *, window_ms: float = 20.0,
                 min_level_dbm0: float = -36.0, freq_tolerance: float = 0.025,
                 normal_twist_db: float = 8.0, reverse_twist_db: float = 4.0,
                 min_tone_ratio: float = 0.85, max_harmonic_db: float = -20.0,
                 max_imbalance_db: float = 6.0, min_tone_ms: float = 40.0, min_pause_ms: float = 40.0) -> None:
        if sample_rate < 8000:
            raise MediaError("in-band DTMF needs a sample rate of 8 kHz or more")
        if not 0 < block_ms <= window_ms / 2:
            raise MediaError("block_ms must be positive and at most half of window_ms")
        self.sample_rate = sample_rate
        self.stats: collections.Counter[str] = collections.Counter()
        self._hop = max(1, round(block_ms * sample_rate / 1000.0))
        self._win = round(window_ms * sample_rate / 1000.0)
        self._lag = self._win // 5  # sub-window offset for the phase-advance frequency estimate
        m = self._win - self._lag
        self._sub = m
        n = np.arange(m)
        w = 0.5 - 0.5 * np.cos(2 * np.pi * n / m)  # periodic Hann
        self._wsum = float(w.sum())
        self._w = w
        freqs = np.array(DTMF_FREQS)
        self._freqs, self._n = freqs, n
        arg = 2 * np.pi * np.outer(n, freqs) / sample_rate
        basis = np.hstack([w[:, None] * np.cos(arg), w[:, None] * np.sin(arg)])  # (m, 16)
        self._basis2 = np.zeros((self._win, 32))  # sub-window A: rows 0..m, B: rows lag..lag+m
        self._basis2[:m, :16] = basis
        self._basis2[self._lag:, 16:] = basis
        self._harm_basis = np.hstack([w[:, None] * np.cos(2 * arg), w[:, None] * np.sin(2 * arg)])
        self._carrier = np.exp(1j * arg.T)  # (8, m): each tone at its nominal frequency
        self._unrotate = np.exp(-2j * np.pi * freqs * self._lag / sample_rate)  # nominal advance
        self._min_amp = DBM0_RMS * math.sqrt(2.0) * 10.0 ** (min_level_dbm0 / 20.0)
        self._tol = freq_tolerance
        self._norm_ratio = 10.0 ** (normal_twist_db / 20.0)  # low may exceed high by this much
        self._rev_ratio = 10.0 ** (reverse_twist_db / 20.0)  # high may exceed low by this much
        self._min_ratio = min_tone_ratio
        self._max_harm = 10.0 ** (max_harmonic_db / 20.0)
        self._max_imbalance = 10.0 ** (max_imbalance_db / 10.0)
        # Measured on generated tones: a tone of T samples gives a run of n valid windows with
        # T ≈ (n-1)*hop + 0.4*window + hop (±hop/2), its first window starting ≈ 0.225*window -
        # hop/2 before it: edge windows pass once ~3/4 of them hold the tone.
        ms = sample_rate / 1000.0
        self._extra = 0.4 * self._win + self._hop
        self._lead = 0.225 * self._win - self._hop / 2
        # accept from min_tone_ms - 2 hops on (a 40 ms tone passes at any alignment, 30 ms none)
        self._need = max(2, math.ceil((min_tone_ms * ms - 2 * self._hop - self._extra) / self._hop) + 1)
        # a pause ends the digit once ~60 % of min_pause_ms long: 40 ms pauses separate digits,
        # interruptions of 10 ms are bridged
        self._pause_hops = max(2, math.ceil((0.6 * min_pause_ms * ms + 0.4 * self._win) / self._hop))
        self._buf = np.zeros(0)
        self._pos = 0  # input index of _buf[0]
        self._state = _St.IDLE
        self._run_digit: str | None = None
        self._run_len = 0
        self._run_start = 0
        self._tone: str | None = None
        self._first = self._last = 0
        self._miss = 0

    # ---- public API -----------------------------------------------------------------------
    def feed(self, samples: np.ndarray) -> list[DtmfEvent]:
        """Analyse more audio (int16 or any numeric array in int16 scale)."""
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        self._buf = np.concatenate([self._buf, x]) if self._buf.size else x
        count = (self._buf.size - self._win) // self._hop + 1 if self._buf.size >= self._win else 0
        if count <= 0:
            return []
        frames = np.lib.stride_tricks.sliding_window_view(self._buf, self._win)[::self._hop][:count]
        digits = self.classify(frames)
        out: list[DtmfEvent] = []
        for i, d in enumerate(digits):
            self._step(d or None, self._pos + i * self._hop, out)
        used = count * self._hop
        self._buf = self._buf[used:].copy()
        self._pos += used
        self.stats["windows"] += count
        return out

    def flush(self) -> list[DtmfEvent]:
        """End of the stream: end a tone still in progress (if it was long enough)."""
        out: list[DtmfEvent] = []
        if self._state is _St.TONE:
            self._end(out)
        return out

    def classify(self, frames: np.ndarray) -> list[str]:
        """The digit each window (rows of ``frames``, ``window_ms`` long) holds, '' for none."""
        m, lag, fs = self._sub, self._lag, self.sample_rate
        # both sub-windows' Goertzel values (real, imaginary) in one product; the Hann-weighted
        # basis ignores DC (its response at 0 Hz is far below -60 dB)
        r = frames @ self._basis2
        xa, xb = r[:, :8] - 1j * r[:, 8:16], r[:, 16:24] - 1j * r[:, 24:]
        mag = np.abs(xa) + np.abs(xb)
        lo = np.argmax(mag[:, :4], axis=1)
        hi = 4 + np.argmax(mag[:, 4:], axis=1)
        rows = np.arange(frames.shape[0])
        rough_lo, rough_hi = mag[rows, lo] / self._wsum, mag[rows, hi] / self._wsum
        loud = (rough_lo >= self._min_amp * 0.7) & (rough_hi >= self._min_amp * 0.7)
        result = [""] * frames.shape[0]
        if not loud.any():
            return result
        # frequency measured from the phase advance over `lag` samples (unambiguous to ±fs/2lag)
        dfreq = np.angle(xb * np.conj(xa) * self._unrotate) * (fs / (2 * np.pi * lag))
        rel = dfreq / self._freqs
        # cheap screening first (level and twist with 3 dB of slack for the filters' roll-off
        # within the tolerance, frequency), then a steady level over the window
        cand = (loud & (np.abs(rel[rows, lo]) <= self._tol) & (np.abs(rel[rows, hi]) <= self._tol)
                & (rough_hi <= rough_lo * 1.42 * self._rev_ratio)
                & (rough_lo <= rough_hi * 1.42 * self._norm_ratio))
        idx = np.flatnonzero(cand)
        if idx.size == 0:
            return result
        frames = frames[idx] - frames[idx].mean(axis=1, keepdims=True)
        half = self._win // 2
        e1 = np.einsum("ij,ij->i", frames[:, :half], frames[:, :half])
        e2 = np.einsum("ij,ij->i", frames[:, half:], frames[:, half:])
        steady = (e1 * self._max_imbalance >= e2) & (e2 * self._max_imbalance >= e1)
        idx, frames = idx[steady], frames[steady]
        if idx.size == 0:
            return result
        # fit both tones (amplitude, phase, measured frequency) and subtract them: what is left
        # is noise, speech or music; its share of the energy and its second harmonics decide
        sub = frames[:, :m]
        residual = sub.copy()
        amps = []
        for tone in (lo[idx], hi[idx]):
            shift = np.exp(2j * np.pi * np.outer(dfreq[idx, tone], self._n) / fs)
            gain = shift @ self._w  # the window's response to the frequency error
            c = 2 * xa[idx, tone] / np.where(np.abs(gain) > 1e-9, gain, 1e-9)
            residual -= np.real(c[:, None] * self._carrier[tone] * shift)
            amps.append(np.abs(c))
        a_lo, a_hi = amps
        hr = residual @ self._harm_basis
        harm = 2 * np.abs(hr[:, :8] - 1j * hr[:, 8:]) / self._wsum
        sel = np.arange(idx.size)
        harm_ok = (harm[sel, lo[idx]] <= self._max_harm * a_lo) & (harm[sel, hi[idx]] <= self._max_harm * a_hi)
        total = np.einsum("ij,j,ij->i", sub, self._w, sub)
        left = np.einsum("ij,j,ij->i", residual, self._w, residual)
        ratio = 1.0 - left / np.maximum(total, 1e-9)
        ok = ((a_lo >= self._min_amp) & (a_hi >= self._min_amp) & (a_hi <= a_lo * self._rev_ratio)
              & (a_lo <= a_hi * self._norm_ratio) & (ratio >= self._min_ratio) & harm_ok)
        for i in idx[ok]:
            result[i] = str(_DIGIT_AT[lo[i], hi[i] - 4])
        return result

    # ---- per-window state table -----------------------------------------------------------
    def _step(self, digit: str | None, at: int, out: list[DtmfEvent]) -> None:
        if digit is not None and digit == self._run_digit:
            self._run_len += 1
        else:
            self._run_digit, self._run_len, self._run_start = digit, (1 if digit else 0), at
        if self._state is _St.IDLE:
            name = "tone" if digit is not None else "silence"
        else:
            name = "same" if digit == self._tone else "other"
        self._TABLE[(self._state, name)](self, digit, at, out)

    def _idle_tone(self, digit: str | None, at: int, out: list[DtmfEvent]) -> None:
        if self._run_len >= self._need:
            self._state, self._tone = _St.TONE, digit
            self._first, self._last, self._miss = self._run_start, at, 0
            self.stats["digits"] += 1
            out.append(DtmfStart(str(digit), self._tone_start(), "inband"))

    def _idle_silence(self, digit: str | None, at: int, out: list[DtmfEvent]) -> None:
        pass

    def _tone_same(self, digit: str | None, at: int, out: list[DtmfEvent]) -> None:
        self._last, self._miss = at, 0

    def _tone_other(self, digit: str | None, at: int, out: list[DtmfEvent]) -> None:
        self._miss += 1
        if self._miss >= self._pause_hops:
            self._end(out)
            if digit is not None:
                self._idle_tone(digit, at, out)

    def _tone_start(self) -> int:
        return max(0, int(round(self._first + self._lead)))

    def _end(self, out: list[DtmfEvent]) -> None:
        samples = self._last - self._first + self._extra
        ms = int(round(samples * 1000.0 / self.sample_rate))
        out.append(DtmfEnd(str(self._tone), ms, self._tone_start(), "inband"))
        log.debug("in-band DTMF %s, %d ms", self._tone, ms)
        self._state, self._tone = _St.IDLE, None

    _TABLE: dict[tuple[_St, str], Callable[[GoertzelDetector, str | None, int, list[DtmfEvent]], None]] = {
        (_St.IDLE, "tone"): _idle_tone,
        (_St.IDLE, "silence"): _idle_silence,
        (_St.TONE, "same"): _tone_same,
        (_St.TONE, "other"): _tone_other,
    }
