"""G.711 µ-law (PCMU) and A-law (PCMA), ITU-T G.711 / RFC 3551 §4.5.14, as numpy lookups.

Encoding is one fancy-index into a 65536-entry table (the int16 sample viewed as uint16 is
the index); decoding one index into a 256-entry table. The tables are computed once, at
import, from the segment/quantiser definition of G.711 §2 (tables 1a/2a), in the
well-known CCITT/Sun reference form that also backs CPython's ``audioop``: µ-law
quantises the sample truncated to 14 bits, A-law to 13 bits. SoX uses the same tables but
rounds to 14/13 bits first, so its µ-law differs from ours on 508 of the 65536 inputs
(A-law: 1020), always by one step at a decision level. The tests check all inputs and
codes against ``audioop``, and against SoX fed pre-truncated samples.

Loss concealment is :class:`~media.codecs.base.WaveformPlc` (G.711 Appendix I style).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import ClassVar

import numpy as np

from media.codecs.base import CodecError, check_frame, check_ptime, register_codec
from media.codecs.base import PlcCodec, WaveformPlc

__all__ = ["PcmuCodec", "PcmaCodec", "ulaw_encode", "ulaw_decode", "alaw_encode", "alaw_decode"]

log = logging.getLogger(__name__)

_ALL = np.arange(-32768, 32768, dtype=np.int32)  # every int16, in int16 order
_CODES = np.arange(256, dtype=np.int32)


def _ulaw_encode_table() -> np.ndarray:
    # G.711 §2 table 2a (µ-law), on 14-bit magnitudes biased by 33; code bits inverted.
    v = _ALL >> 2
    neg = v < 0
    mag = np.minimum(np.where(neg, -v, v), 8159) + 33
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), mag)
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ np.where(neg, 0x7F, 0xFF)).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    # G.711 §2 table 1a (A-law), on 13-bit values; even bits inverted (XOR 0x55).
    v = _ALL >> 3
    neg = v < 0
    mag = np.where(neg, -v - 1, v)
    seg = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), mag)
    mant = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | mant)
    return (code ^ np.where(neg, 0x55, 0xD5)).astype(np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    u = ~_CODES & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = _CODES ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


# Encode tables are indexed by the sample's uint16 view: reorder from int16 order.
ULAW_ENCODE = np.roll(_ulaw_encode_table(), -32768)
ALAW_ENCODE = np.roll(_alaw_encode_table(), -32768)
ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
for _t in (ULAW_ENCODE, ALAW_ENCODE, ULAW_DECODE, ALAW_DECODE):
    _t.flags.writeable = False


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples → µ-law bytes (any length)."""
    return ULAW_ENCODE.take(np.asarray(pcm, np.int16).view(np.uint16)).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """µ-law bytes → int16 samples."""
    return ULAW_DECODE[np.frombuffer(data, np.uint8)]


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples → A-law bytes (any length)."""
    return ALAW_ENCODE.take(np.asarray(pcm, np.int16).view(np.uint16)).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes → int16 samples."""
    return ALAW_DECODE[np.frombuffer(data, np.uint8)]


class _G711(PlcCodec):
    """Shared by PCMU and PCMA: one byte per 8 kHz sample, no state but the PLC's."""

    clock_rate: ClassVar[int] = 8000
    _enc: ClassVar[np.ndarray]
    _dec: ClassVar[np.ndarray]

    def __init__(self, *, ptime_ms: int = 20) -> None:
        self.sample_rate = 8000
        self.ptime_ms = check_ptime(ptime_ms, 8000)
        self._frame = self.frame_samples
        self._plc = WaveformPlc(8000)
        self._last_len = self._frame
        self.stats: Counter[str] = Counter()

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._enc.take(check_frame(pcm, self._frame).view(np.uint16)).tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # every byte is a valid code; only an empty payload is corrupt
            self.stats["corrupt"] += 1
            raise CodecError(f"empty {self.name} payload")
        pcm = self._dec[np.frombuffer(payload, np.uint8)]
        return self._good(pcm)

    def reset(self) -> None:
        self._plc.reset()
        self._last_len = self._frame


@register_codec
class PcmuCodec(_G711):
    """G.711 µ-law, static payload type 0 (RFC 3551 §6)."""

    name: ClassVar[str] = "PCMU"
    static_payload_type: ClassVar[int | None] = 0
    _enc = ULAW_ENCODE
    _dec = ULAW_DECODE


@register_codec
class PcmaCodec(_G711):
    """G.711 A-law, static payload type 8 (RFC 3551 §6)."""

    name: ClassVar[str] = "PCMA"
    static_payload_type: ClassVar[int | None] = 8
    _enc = ALAW_ENCODE
    _dec = ALAW_DECODE
