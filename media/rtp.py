"""RTP packets (RFC 3550 §5.1): parse and build, with CSRCs, header extension, padding, marker.

Sans-IO and allocation-light: ``parse`` slices the payload without copying the header twice.
Sequence-number arithmetic helpers for wrap-around (RFC 3550 §A.1) live here too.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from media.errors import MalformedPacket

__all__ = ["RtpPacket", "parse", "seq_diff", "ts_diff", "RTP_VERSION"]

log = logging.getLogger(__name__)

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile-defined id, data), RFC 3550 §5.3.1
    padding: int = 0  # bytes of padding to add when building (§5.1 P bit)

    def to_bytes(self) -> bytes:
        if len(self.csrcs) > 15 or not 0 <= self.payload_type <= 127 or not 0 <= self.sequence <= 0xFFFF \
                or not 0 <= self.padding <= 255:
            raise ValueError(f"RTP field out of range in {self!r}")  # §5.1: CC is 4 bits, PT 7
        b0 = (RTP_VERSION << 6) | (0x20 if self.padding else 0) | (0x10 if self.extension else 0) | len(self.csrcs)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        out = [_HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF)]
        if self.csrcs:
            out.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            ext_id, data = self.extension
            if not 0 <= ext_id <= 0xFFFF or len(data) % 4 or len(data) // 4 > 0xFFFF:
                raise ValueError("RTP header extension: 16-bit id and a length that is a multiple of 4")
            out.append(struct.pack("!HH", ext_id, len(data) // 4) + data)
        out.append(self.payload)
        if self.padding:
            out.append(b"\x00" * (self.padding - 1) + bytes([self.padding]))
        return b"".join(out)


def parse(data: bytes) -> RtpPacket:
    """Parse one RTP packet; raises :class:`MalformedPacket` for anything invalid."""
    if len(data) < 12:
        raise MalformedPacket(f"RTP packet too short ({len(data)} bytes)")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise MalformedPacket(f"RTP version {b0 >> 6}")
    cc = b0 & 0x0F
    offset = 12 + 4 * cc
    if len(data) < offset:
        raise MalformedPacket("RTP CSRC list truncated")
    csrcs = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
    extension = None
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise MalformedPacket("RTP header extension truncated")
        ext_id, words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * words
        if len(data) < end:
            raise MalformedPacket("RTP header extension truncated")
        extension = (ext_id, bytes(data[offset + 4:end]))
        offset = end
    end = len(data)
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > end:
            raise MalformedPacket("RTP padding length invalid")
        end -= padding
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80), tuple(csrcs),
                     extension, padding)


def seq_diff(a: int, b: int) -> int:
    """a - b for 16-bit sequence numbers, in -32768..32767 (RFC 3550 §A.1)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """a - b for 32-bit RTP timestamps, signed."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000
