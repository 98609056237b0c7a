"""RTCP (RFC 3550 §6): SR, RR, SDES, BYE, APP, compound packets, and RTCP XR VoIP metrics (RFC 3611).

Sans-IO: ``parse_compound(data)`` turns one datagram into a list of frozen packet records and raises
:class:`MalformedPacket` for anything invalid, so that a receive path can drop and count it;
``build_compound(packets)`` does the reverse. Packet types this module does not model (RTPFB/PSFB
feedback from WebRTC peers, …) come back as :class:`UnknownRtcp` so that nothing is silently lost.

NTP timestamps: ``now`` in the cores is a float of seconds. :func:`ntp_from_seconds` reads it as
seconds since the Unix epoch (adapters add their wall-clock offset); round-trip-time arithmetic only
needs one consistent clock per endpoint (§6.4.1).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from media.errors import MalformedPacket

__all__ = [
    "ReportBlock", "SenderReport", "ReceiverReport", "SdesChunk", "SourceDescription", "Bye", "App",
    "XrBlock", "VoipMetrics", "ExtendedReport", "UnknownRtcp", "RtcpPacket",
    "parse_compound", "build_compound", "ntp_from_seconds", "seconds_from_ntp", "ntp_middle32",
    "rtcp_interval", "update_avg_rtcp_size",
    "SR", "RR", "SDES", "BYE", "APP", "XR", "CNAME",
]

log = logging.getLogger(__name__)

SR, RR, SDES, BYE, APP, XR = 200, 201, 202, 203, 204, 207  # RFC 3550 §12.1, RFC 3611 §2
CNAME, NAME, EMAIL, PHONE, LOC, TOOL, NOTE, PRIV = range(1, 9)  # RFC 3550 §12.2
VOIP_METRICS_BT = 7  # RFC 3611 §4.7

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01 (RFC 3550 §4)
_HDR = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IB3sIIII")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC + NTP + RTP ts + packets + octets (§6.4.1)
_VOIP = struct.Struct("!BBHIBBBBHHHHbbBBBBBBBBHHH")
_MAX_COUNT = 31


# -- NTP time (RFC 3550 §4) ------------------------------------------------------------------------

def ntp_from_seconds(seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for ``seconds`` since the Unix epoch."""
    whole = math.floor(seconds)
    frac = int((seconds - whole) * 4294967296.0)
    return (((whole + NTP_UNIX_OFFSET) & 0xFFFFFFFF) << 32) | (frac & 0xFFFFFFFF)


def seconds_from_ntp(ntp: int) -> float:
    """Inverse of :func:`ntp_from_seconds` (era 0: 1900–2036)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 4294967296.0


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp, in 1/65536 s (LSR, §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


# -- records ---------------------------------------------------------------------------------------

def _u(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what} {value} does not fit in {bits} bits")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0..255, fixed point /256
    cumulative_lost: int  # signed 24-bit
    highest_seq: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    dlsr: int = 0  # delay since that SR, 1/65536 s

    def to_bytes(self) -> bytes:
        _u(self.ssrc, 32, "SSRC")
        _u(self.fraction_lost, 8, "fraction lost")
        # §6.4.1 / §A.3: clamp to the signed 24-bit range, two's complement on the wire
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(self.ssrc, self.fraction_lost, lost.to_bytes(3, "big"), self.highest_seq & 0xFFFFFFFF,
                           self.jitter & 0xFFFFFFFF, self.lsr & 0xFFFFFFFF, self.dlsr & 0xFFFFFFFF)

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = int.from_bytes(lost, "big")
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, fraction, cumulative, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR, packet type 200 (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific extension (§6.4.3)

    def to_bytes(self) -> bytes:
        _u(self.ssrc, 32, "SSRC")
        _u(self.ntp_timestamp, 64, "NTP timestamp")
        body = _SENDER_INFO.pack(self.ssrc, self.ntp_timestamp, self.rtp_timestamp & 0xFFFFFFFF,
                                 self.packet_count & 0xFFFFFFFF, self.octet_count & 0xFFFFFFFF)
        return _packet(SR, len(self.reports), body + _blocks(self.reports) + self.extension)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR, packet type 201 (RFC 3550 §6.4.2); may carry no blocks at all."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def to_bytes(self) -> bytes:
        _u(self.ssrc, 32, "SSRC")
        return _packet(RR, len(self.reports), struct.pack("!I", self.ssrc) + _blocks(self.reports) + self.extension)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its (item type, value) pairs (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES, packet type 202 (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls((SdesChunk(ssrc, ((CNAME, cname.encode("utf-8")),)),))

    def to_bytes(self) -> bytes:
        out = []
        for chunk in self.chunks:
            _u(chunk.ssrc, 32, "SSRC")
            part = [struct.pack("!I", chunk.ssrc)]
            for kind, value in chunk.items:
                if not 1 <= kind <= 255 or len(value) > 255:
                    raise ValueError(f"SDES item type {kind} / length {len(value)} out of range")
                part.append(bytes((kind, len(value))) + value)
            raw = b"".join(part)
            out.append(raw + b"\x00" * (4 - len(raw) % 4))  # §6.5: null item, then pad to 32 bits
        return _packet(SDES, len(self.chunks), b"".join(out))


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE, packet type 203, with an optional reason (RFC 3550 §6.6)."""

    ssrcs: tuple[int, ...]
    reason: str | None = None

    def to_bytes(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.ssrcs)
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            if len(text) > 255:
                raise ValueError("BYE reason longer than 255 octets")
            body += _pad4(bytes((len(text),)) + text)
        return _packet(BYE, len(self.ssrcs), body)


@dataclass(frozen=True, slots=True)
class App:
    """APP, packet type 204, passed through (RFC 3550 §6.7)."""

    subtype: int
    ssrc: int
    name: str  # four ASCII characters
    data: bytes = b""

    def to_bytes(self) -> bytes:
        _u(self.subtype, 5, "APP subtype")
        name = self.name.encode("latin-1")
        if len(name) != 4 or len(self.data) % 4:
            raise ValueError("APP name must be 4 octets and data a multiple of 4 octets")
        return _packet(APP, self.subtype, struct.pack("!I", self.ssrc) + name + self.data)


@dataclass(frozen=True, slots=True)
class XrBlock:
    """An XR report block this module does not model, passed through (RFC 3611 §3)."""

    block_type: int
    type_specific: int
    data: bytes

    def to_bytes(self) -> bytes:
        if len(self.data) % 4:
            raise ValueError("XR block data must be a multiple of 4 octets")
        return struct.pack("!BBH", self.block_type, self.type_specific, len(self.data) // 4) + self.data


@dataclass(frozen=True, slots=True)
class VoipMetrics:
    """VoIP Metrics Report Block, BT=7 (RFC 3611 §4.7). Field values are on the wire scales:
    rates are fractions ×256, delays in ms, levels in dB(m), R factors 0..100, MOS ×10;
    127 means "unavailable" for the levels, R factors and MOS."""

    ssrc: int
    loss_rate: int = 0
    discard_rate: int = 0
    burst_density: int = 0
    gap_density: int = 0
    burst_duration: int = 0
    gap_duration: int = 0
    round_trip_delay: int = 0
    end_system_delay: int = 0
    signal_level: int = 127  # signed
    noise_level: int = 127  # signed
    rerl: int = 127
    gmin: int = 16  # §4.7.6: recommended 16
    r_factor: int = 127
    ext_r_factor: int = 127
    mos_lq: int = 127
    mos_cq: int = 127
    rx_config: int = 0
    jb_nominal: int = 0
    jb_maximum: int = 0
    jb_abs_max: int = 0

    def to_bytes(self) -> bytes:
        try:
            return _VOIP.pack(VOIP_METRICS_BT, 0, 8, self.ssrc, self.loss_rate, self.discard_rate,
                              self.burst_density, self.gap_density, self.burst_duration, self.gap_duration,
                              self.round_trip_delay, self.end_system_delay, self.signal_level, self.noise_level,
                              self.rerl, self.gmin, self.r_factor, self.ext_r_factor, self.mos_lq, self.mos_cq,
                              self.rx_config, 0, self.jb_nominal, self.jb_maximum, self.jb_abs_max)
        except struct.error as exc:
            raise ValueError(f"VoIP metrics field out of range: {exc}") from None


@dataclass(frozen=True, slots=True)
class ExtendedReport:
    """XR, packet type 207 (RFC 3611 §2)."""

    ssrc: int
    blocks: tuple[VoipMetrics | XrBlock, ...] = ()

    def to_bytes(self) -> bytes:
        return _packet(XR, 0, struct.pack("!I", self.ssrc) + b"".join(b.to_bytes() for b in self.blocks))


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any other packet type (RTPFB 205, PSFB 206, …), passed through (RFC 3550 §6.1: ignore)."""

    packet_type: int
    count: int
    body: bytes

    def to_bytes(self) -> bytes:
        if len(self.body) % 4:
            raise ValueError("RTCP packet body must be a multiple of 4 octets")
        return _packet(self.packet_type, self.count, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | App | ExtendedReport | UnknownRtcp


# -- building --------------------------------------------------------------------------------------

def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _blocks(reports: Sequence[ReportBlock]) -> bytes:
    return b"".join(r.to_bytes() for r in reports)


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    # RFC 3550 §6.4.1 header: V=2, P, count (5 bits), PT, length in 32-bit words minus one
    if not 0 <= count <= _MAX_COUNT:
        raise ValueError(f"RTCP count {count} exceeds 31 (split into several packets)")
    if len(body) % 4:
        raise ValueError("RTCP packet body must be a multiple of 4 octets")
    words = len(body) // 4
    if words > 0xFFFF:
        raise ValueError("RTCP packet too long")
    return _HDR.pack(0x80 | count, packet_type, words) + body


def build_compound(packets: Sequence[RtcpPacket], *, strict: bool = True) -> bytes:
    """Serialise a compound RTCP packet. With ``strict`` the §6.1 rules apply: it starts with an
    SR or RR, carries an SDES CNAME, and a BYE comes last. ``strict=False`` allows the
    reduced-size packets of RFC 5506."""
    if not packets:
        raise ValueError("empty compound RTCP packet")
    if strict:
        if not isinstance(packets[0], SenderReport | ReceiverReport):
            raise ValueError("compound RTCP must start with SR or RR (RFC 3550 §6.1)")
        if not any(isinstance(p, SourceDescription) and any(c.cname is not None for c in p.chunks)
                   for p in packets):
            raise ValueError("compound RTCP must carry an SDES CNAME (RFC 3550 §6.1)")
        if any(isinstance(p, Bye) for p in packets[:-1]):
            raise ValueError("BYE must be the last packet of a compound RTCP packet (RFC 3550 §6.1)")
    return b"".join(p.to_bytes() for p in packets)


# -- parsing ---------------------------------------------------------------------------------------

def parse_compound(data: bytes, *, strict: bool = True) -> list[RtcpPacket]:
    """Parse one RTCP datagram into its packets; raises :class:`MalformedPacket`.

    Checks per RFC 3550 §A.2: version 2 throughout, lengths that add up to the datagram, padding
    only on the last packet; with ``strict`` the first packet must be SR or RR (``strict=False``
    accepts RFC 5506 reduced-size RTCP).
    """
    data = bytes(data)
    if len(data) < 4:
        raise MalformedPacket(f"RTCP datagram too short ({len(data)} bytes)")
    out: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise MalformedPacket("RTCP header truncated")
        b0, packet_type, words = _HDR.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise MalformedPacket(f"RTCP version {b0 >> 6}")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise MalformedPacket(f"RTCP packet type {packet_type} truncated")
        body_end = end
        if b0 & 0x20:  # §6.4.1 P bit: only the last packet may be padded (§A.2)
            if end != len(data):
                raise MalformedPacket("RTCP padding on a packet that is not the last")
            pad = data[end - 1] if words else 0
            if pad == 0 or pad > 4 * words:
                raise MalformedPacket("RTCP padding length invalid")
            body_end -= pad
        if strict and pos == 0 and packet_type not in (SR, RR):
            raise MalformedPacket(f"compound RTCP starts with packet type {packet_type}")
        out.append(_parse_one(packet_type, b0 & 0x1F, data[pos + 4:body_end]))
        pos = end
    return out


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == SR:
        need = _SENDER_INFO.size + 24 * count
        if len(body) < need:
            raise MalformedPacket("RTCP SR truncated")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        reports = tuple(ReportBlock.parse(body, _SENDER_INFO.size + 24 * i) for i in range(count))
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports, body[need:])
    if packet_type == RR:
        need = 4 + 24 * count
        if len(body) < need:
            raise MalformedPacket("RTCP RR truncated")
        reports = tuple(ReportBlock.parse(body, 4 + 24 * i) for i in range(count))
        return ReceiverReport(struct.unpack_from("!I", body)[0], reports, body[need:])
    if packet_type == SDES:
        return _parse_sdes(count, body)
    if packet_type == BYE:
        return _parse_bye(count, body)
    if packet_type == APP:
        if len(body) < 8:
            raise MalformedPacket("RTCP APP truncated")
        return App(count, struct.unpack_from("!I", body)[0], body[4:8].decode("latin-1"), body[8:])
    if packet_type == XR:
        return _parse_xr(body)
    return UnknownRtcp(packet_type, count, body)


def _parse_sdes(count: int, body: bytes) -> SourceDescription:
    chunks = []
    pos = 0
    for _ in range(count):
        if len(body) - pos < 4:
            raise MalformedPacket("RTCP SDES chunk truncated")
        ssrc = struct.unpack_from("!I", body, pos)[0]
        pos += 4
        items = []
        while True:  # §6.5: items until a null octet, then pad to the next 32-bit boundary
            if pos >= len(body):
                raise MalformedPacket("RTCP SDES items not terminated")
            kind = body[pos]
            if kind == 0:
                pos = (pos + 4) & ~3
                break
            if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                raise MalformedPacket("RTCP SDES item truncated")
            length = body[pos + 1]
            items.append((kind, body[pos + 2:pos + 2 + length]))
            pos += 2 + length
        if pos > len(body):
            raise MalformedPacket("RTCP SDES chunk padding truncated")
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_bye(count: int, body: bytes) -> Bye:
    need = 4 * count
    if len(body) < need:
        raise MalformedPacket("RTCP BYE truncated")
    ssrcs = struct.unpack_from(f"!{count}I", body)
    reason = None
    if len(body) > need:  # §6.6: optional length-prefixed reason
        length = body[need]
        if need + 1 + length > len(body):
            raise MalformedPacket("RTCP BYE reason truncated")
        reason = body[need + 1:need + 1 + length].decode("utf-8", "replace")
    return Bye(tuple(ssrcs), reason)


def _parse_xr(body: bytes) -> ExtendedReport:
    if len(body) < 4:
        raise MalformedPacket("RTCP XR truncated")
    ssrc = struct.unpack_from("!I", body)[0]
    blocks: list[VoipMetrics | XrBlock] = []
    pos = 4
    while pos < len(body):
        if len(body) - pos < 4:
            raise MalformedPacket("RTCP XR block header truncated")
        block_type, specific, words = struct.unpack_from("!BBH", body, pos)
        end = pos + 4 + 4 * words  # RFC 3611 §3: block length in words, minus the header word
        if end > len(body):
            raise MalformedPacket("RTCP XR block truncated")
        if block_type == VOIP_METRICS_BT:
            if words != 8:
                raise MalformedPacket("RTCP XR VoIP metrics block length is not 8")
            f = _VOIP.unpack_from(body, pos)
            blocks.append(VoipMetrics(*f[3:21], *f[22:]))
        else:
            blocks.append(XrBlock(block_type, specific, body[pos + 4:end]))
        pos = end
    return ExtendedReport(ssrc, tuple(blocks))


# -- transmission interval (RFC 3550 §6.3.1, §A.7) --------------------------------------------------

RTCP_MIN_TIME = 5.0
_COMPENSATION = math.e - 1.5


def rtcp_interval(u: float, *, members: int = 2, senders: int = 2, we_sent: bool = True,
                  rtcp_bw: float = 0.05 * 64_000 / 8, avg_rtcp_size: float = 128.0, initial: bool = False,
                  min_time: float = RTCP_MIN_TIME, reconsideration: bool = False) -> float:
    """Seconds until the next RTCP report, §6.3.1/§A.7, as a pure function.

    ``u`` is a uniform random number in [0, 1) (the caller owns the RNG, so tests are
    deterministic); the deterministic interval is multiplied by ``u + 0.5``. ``rtcp_bw`` is the RTCP
    bandwidth in octets/s (5 % of the session bandwidth, §6.2), ``avg_rtcp_size`` in octets
    including UDP/IP headers. The first report uses half the minimum (§6.2). The e−3/2
    compensation of §A.7 is only applied with ``reconsideration`` (we do not reconsider timers:
    a two-party call has a fixed membership).
    """
    if not 0.0 <= u < 1.0:
        raise ValueError(f"u must be in [0, 1), got {u}")
    if members < 1 or senders < 0 or rtcp_bw <= 0 or avg_rtcp_size <= 0:
        raise ValueError("members >= 1, senders >= 0, rtcp_bw > 0 and avg_rtcp_size > 0 required")
    minimum = min_time / 2 if initial else min_time
    n = members
    bw = rtcp_bw
    if senders <= members * 0.25:  # §6.3.1: senders get 1/4 of the RTCP bandwidth
        if we_sent:
            bw *= 0.25
            n = senders
        else:
            bw *= 0.75
            n = members - senders
    t = max(avg_rtcp_size * n / bw, minimum)
    t *= u + 0.5
    return t / _COMPENSATION if reconsideration else t


def update_avg_rtcp_size(avg: float, packet_size: int) -> float:
    """§6.3.3: avg_rtcp_size = 1/16 · packet_size + 15/16 · avg_rtcp_size."""
    return avg + (packet_size - avg) / 16.0
