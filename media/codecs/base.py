"""The audio codec interface and the registry that builds codecs by SDP encoding name.

One :class:`AudioCodec` object is one RTP stream's codec: it holds the encoder state for what
we send and the decoder (plus packet-loss concealment) state for what we receive. All codecs
work on 20 ms (by default) mono int16 numpy frames at :attr:`AudioCodec.sample_rate`; the RTP
timestamp advances by :attr:`AudioCodec.timestamp_step` per frame, in :attr:`clock_rate` units
(which differ from the PCM rate for G.722, RFC 3551 §4.5.2, and for Opus, RFC 7587 §4.1).

A new codec is one class decorated with :func:`register_codec`; :func:`make_codec` looks it
up by its SDP name (case-insensitively, RFC 4566 §6 rtpmap encoding names).

:class:`WaveformPlc` is the packet-loss concealment on decoded PCM for the codecs without
their own (G.711, G.722). It follows ITU-T G.711 Appendix I (pitch-period waveform
repetition), scaled to the stream's sample rate:

* history: the last 48.75 ms of output (3.25 × the longest pitch period);
* pitch: the lag of 5–15 ms (200–66 Hz) that maximises the normalised cross-correlation
  of the last 20 ms with the history (a full search, vectorised, instead of the
  Appendix's 2:1-decimated coarse search and refinement);
* synthesis: the last pitch period repeated, the loop's last ¼ period cross-faded with
  the ¼ period before the loop so that the seam is smooth; after 10 ms of loss two
  periods are repeated and after 20 ms three (less buzzy), cross-faded over ¼ period;
* attenuation: none for the first 10 ms, then linearly 20 % per 10 ms, silent from 60 ms;
* recovery: the first good frame is overlap-added with the synthetic continuation over
  ¼ pitch period plus 4 ms per further 10 ms of loss (at most 10 ms);
* the concealed signal enters the history, so a loss soon after a loss still conceals.

One deliberate change: the Appendix delays all output by 3.75 ms so that the start of
the synthetic signal can be overlap-added with real signal not yet played. We do not
delay every frame for the sake of the rare loss; instead the step between the last real
sample and the first synthetic one is removed by an offset that fades out over ¼ pitch
period (value and slope stay continuous).
"""

from __future__ import annotations

import abc
import logging
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from media.errors import MediaError

__all__ = ["AudioCodec", "CodecError", "CODECS", "register_codec", "make_codec", "check_frame", "check_ptime",
           "WaveformPlc", "PlcCodec"]

log = logging.getLogger(__name__)


class CodecError(MediaError):
    """A payload the decoder cannot decode (the caller conceals that frame instead)."""


class AudioCodec(abc.ABC):
    """One stream's encoder + decoder + loss concealment for one payload format.

    Class attributes describe the format; instance attributes the negotiated framing.
    """

    name: ClassVar[str]  # SDP encoding name (a=rtpmap), e.g. "PCMU"
    clock_rate: ClassVar[int]  # RTP timestamp clock (a=rtpmap), RFC 3551 §4.5
    sdp_channels: ClassVar[int] = 1  # the rtpmap channel count ("opus/48000/2", RFC 7587 §7)
    static_payload_type: ClassVar[int | None] = None  # RFC 3551 §6 table 4
    has_fec: ClassVar[bool] = False  # decode_fec() recovers from the next packet

    channels: int = 1  # PCM channels of encode() input and decode() output
    sample_rate: int
    ptime_ms: int

    @property
    def frame_samples(self) -> int:
        """PCM samples per channel in one ``ptime_ms`` frame at :attr:`sample_rate`."""
        return self.sample_rate * self.ptime_ms // 1000

    @property
    def timestamp_step(self) -> int:
        """RTP timestamp increment per ``ptime_ms`` frame (in :attr:`clock_rate` ticks)."""
        return self.clock_rate * self.ptime_ms // 1000

    @abc.abstractmethod
    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode exactly one frame (``frame_samples`` int16 samples) into one RTP payload."""

    @abc.abstractmethod
    def decode(self, payload: bytes) -> np.ndarray:
        """Decode one RTP payload to int16 PCM; raises :class:`CodecError` if it is corrupt."""

    @abc.abstractmethod
    def conceal(self, samples: int | None = None) -> np.ndarray:
        """Synthesise one missing frame (default: as long as the last decoded one)."""

    def decode_fec(self, next_payload: bytes) -> np.ndarray:
        """Recover the frame lost just before ``next_payload`` from its in-band FEC.

        Codecs without in-band FEC conceal instead. The caller still decodes
        ``next_payload`` normally afterwards.
        """
        return self.conceal()

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget all encoder/decoder/concealment state (a new stream, e.g. an SSRC change)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}/{self.clock_rate} pcm={self.sample_rate}Hz ptime={self.ptime_ms}ms>"


CODECS: dict[str, type[AudioCodec]] = {}


def register_codec(cls: type[AudioCodec]) -> type[AudioCodec]:
    """Class decorator: make ``cls`` available to :func:`make_codec` under ``cls.name``."""
    key = cls.name.lower()
    if key in {k.lower() for k in CODECS}:
        raise ValueError(f"codec {cls.name!r} registered twice")
    CODECS[cls.name] = cls
    return cls


def make_codec(name: str, *, ptime_ms: int = 20, **options: Any) -> AudioCodec:
    """Build a codec by SDP encoding name (case-insensitive), e.g. ``make_codec("opus", fec=True)``.

    Raises :class:`~media.errors.MediaError` for an unknown name, ``ValueError`` or
    ``TypeError`` for bad options.
    """
    wanted = name.lower()
    for key, cls in CODECS.items():
        if key.lower() == wanted:
            return cls(ptime_ms=ptime_ms, **options)
    raise MediaError(f"no codec named {name!r} (known: {', '.join(CODECS)})")


def check_ptime(ptime_ms: int, sample_rate: int, allowed: tuple[int, ...] | None = None) -> int:
    """Validate a packetisation time (ms) for a codec at ``sample_rate``."""
    if isinstance(ptime_ms, bool) or not isinstance(ptime_ms, int):
        raise ValueError(f"ptime_ms must be an int, not {ptime_ms!r}")
    if allowed is not None and ptime_ms not in allowed:
        raise ValueError(f"ptime_ms {ptime_ms} not one of {allowed}")
    if not 5 <= ptime_ms <= 200 or ptime_ms % 5 or (sample_rate * ptime_ms) % 1000:
        raise ValueError(f"ptime_ms {ptime_ms} invalid at {sample_rate} Hz (5..200 in 5 ms steps)")
    return ptime_ms


def check_frame(pcm: np.ndarray, samples: int) -> np.ndarray:
    """The one-frame argument check shared by every ``encode``: 1-D int16 of the right length."""
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError("a frame must be a 1-D int16 numpy array")
    if pcm.shape[0] != samples:
        raise ValueError(f"a frame must have {samples} samples, got {pcm.shape[0]}")
    return pcm


# ----------------------------------------------------------- loss concealment (G.711 App. I)


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


class WaveformPlc:
    """Pitch-repetition concealment for one decoded mono int16 stream at ``sample_rate``."""

    def __init__(self, sample_rate: int) -> None:
        if sample_rate % 8000:
            raise ValueError(f"WaveformPlc needs a multiple of 8000 Hz, not {sample_rate}")
        r = sample_rate // 8000
        self.sample_rate = sample_rate
        self._tmin = 40 * r  # 5 ms
        self._tmax = 120 * r  # 15 ms
        self._corr = 160 * r  # 20 ms correlation window
        self._ten_ms = 80 * r
        self._four_ms = 32 * r
        self._hist_len = 3 * self._tmax + self._tmax // 4  # 48.75 ms
        self.reset()

    def reset(self) -> None:
        self._ring = np.zeros(self._hist_len, np.int16)  # history, oldest at self._pos
        self._pos = 0
        self._lost = 0  # samples synthesised in the current erasure
        self._pitch = self._tmax
        self._snap = np.zeros(self._hist_len)
        self._err = 0.0

    @property
    def lost_samples(self) -> int:
        """Samples concealed since the last good frame (0 when not in a loss)."""
        return self._lost

    def _push(self, frame: np.ndarray) -> None:
        n, size, pos = frame.shape[0], self._hist_len, self._pos
        if n >= size:
            self._ring[:] = frame[-size:]
            self._pos = 0
        elif pos + n <= size:
            self._ring[pos:pos + n] = frame
            self._pos = (pos + n) % size
        else:
            k = size - pos
            self._ring[pos:] = frame[:k]
            self._ring[:n - k] = frame[k:]
            self._pos = n - k

    def _estimate_pitch(self, h: np.ndarray) -> int:
        # ITU-T G.711 App. I: maximise the normalised cross-correlation.
        L, corr, tmin, tmax = h.shape[0], self._corr, self._tmin, self._tmax
        ref = h[L - corr:]
        cand = sliding_window_view(h[L - corr - tmax:L - tmin], corr)  # row j: lag tmax - j
        num = cand @ ref
        sq = np.concatenate(([0.0], np.cumsum(h[L - corr - tmax:L - tmin] ** 2)))
        energy = sq[corr:] - sq[:-corr]
        score = np.where(energy > 1e-9, num / np.sqrt(np.maximum(energy, 1e-9)), -np.inf)
        return int(tmax - int(np.argmax(score)))

    def _start_erasure(self) -> None:
        h = np.concatenate((self._ring[self._pos:], self._ring[:self._pos])).astype(np.float64)
        self._snap = h
        self._pitch = self._estimate_pitch(h)
        L, T = h.shape[0], self._pitch
        self._err = float(h[L - 1] - h[L - T - 1])  # real vs predicted predecessor of the loop
        log.debug("PLC: erasure starts, pitch %d samples (%.1f Hz)", T, self.sample_rate / T)

    def _loop(self, periods: int, k: np.ndarray) -> np.ndarray:
        # App. I: repeat the last `periods` pitch periods; smooth the loop seam by
        # cross-fading its last quarter period into the quarter period before the loop.
        h, L, T = self._snap, self._snap.shape[0], self._pitch
        m = periods * T
        ov = max(T // 4, 1)
        pos = k % m
        base = h[L - m + pos]
        w = np.clip((pos - (m - ov) + 1) / (ov + 1), 0.0, 1.0)
        alt = h[np.maximum(L - 2 * m + pos, 0)]
        return base + w * (alt - base)

    def _synth(self, k: np.ndarray) -> np.ndarray:
        T, ten = self._pitch, self._ten_ms
        ov = max(T // 4, 1)
        s = self._loop(1, k)
        if k[-1] >= ten:  # App. I: widen to 2 then 3 periods
            s2 = self._loop(2, k)
            if k[-1] >= 2 * ten:
                w3 = np.clip((k - 2 * ten + 1) / ov, 0.0, 1.0)
                s2 = s2 + w3 * (self._loop(3, k) - s2)
            w2 = np.clip((k - ten + 1) / ov, 0.0, 1.0)
            s = s + w2 * (s2 - s)
        s = s + self._err * np.clip(1.0 - k / ov, 0.0, 1.0)  # delay-free start (see module doc)
        gain = np.clip(1.0 - (k - ten) / (5.0 * ten), 0.0, 1.0)  # App. I: -20 %/10 ms
        return s * gain

    def conceal(self, samples: int) -> np.ndarray:
        """``samples`` of synthetic signal continuing the stream (silence after 60 ms)."""
        if samples <= 0:
            raise ValueError("samples must be positive")
        if self._lost == 0:
            self._start_erasure()
        k = self._lost + np.arange(samples)
        out = _to_int16(self._synth(k))
        self._lost += samples
        self._push(out)
        return out

    def good(self, frame: np.ndarray) -> np.ndarray:
        """Record a decoded frame; right after a loss, blend it in (in place). Returns it."""
        if self._lost and frame.shape[0]:
            # App. I: OLA from the synthetic continuation into the real signal.
            extra = -(-self._lost // self._ten_ms) - 1
            ola = min(max(self._pitch // 4, 1) + extra * self._four_ms, self._ten_ms, frame.shape[0])
            cont = self._synth(self._lost + np.arange(ola))
            w = np.arange(1, ola + 1) / (ola + 1)
            frame[:ola] = _to_int16(cont + w * (frame[:ola] - cont))
            self._lost = 0
        self._push(frame)
        return frame


class PlcCodec(AudioCodec):
    """A codec concealed by :class:`WaveformPlc` on its decoded audio (G.711, G.722): the
    subclass sets ``_plc`` and ``_last_len`` and passes every good frame through ``_good``."""

    _plc: WaveformPlc
    _last_len: int

    def _good(self, pcm: np.ndarray) -> np.ndarray:
        self._last_len = pcm.shape[0]
        return self._plc.good(pcm)

    def conceal(self, samples: int | None = None) -> np.ndarray:
        self.stats["concealed"] += 1
        return self._plc.conceal(samples or self._last_len)
