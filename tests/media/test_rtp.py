"""media/rtp.py: parse/build round trips, malformed input, wrap-aware arithmetic, and agreement
with two independent RTP implementations (aiortc's parser and Wireshark's dissector)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from aiortc.rtp import RtpPacket as AiortcRtpPacket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.errors import MalformedPacket
from media.rtp import RtpPacket, parse, seq_diff, ts_diff

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def rtp_packets(draw: st.DrawFn) -> RtpPacket:
    ext = draw(st.none() | st.tuples(u16, st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4])))
    return RtpPacket(
        payload_type=draw(st.integers(0, 127)),
        sequence=draw(u16),
        timestamp=draw(u32),
        ssrc=draw(u32),
        payload=draw(st.binary(max_size=200)),
        marker=draw(st.booleans()),
        csrcs=tuple(draw(st.lists(u32, max_size=15))),
        extension=ext,
        padding=draw(st.integers(0, 255)),
    )


@given(rtp_packets())
def test_build_parse_round_trip(packet: RtpPacket) -> None:
    data = packet.to_bytes()
    expected_len = 12 + 4 * len(packet.csrcs) + len(packet.payload) + packet.padding
    if packet.extension is not None:
        expected_len += 4 + len(packet.extension[1])
    assert len(data) == expected_len
    assert parse(data) == packet
    assert parse(bytearray(data)) == packet
    assert parse(memoryview(data)) == packet


@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_raise_malformed(data: bytes) -> None:
    try:
        packet = parse(data)
    except MalformedPacket:
        return
    assert packet.payload in data
    assert 0 <= packet.payload_type <= 127 and 0 <= packet.sequence <= 0xFFFF


@given(st.binary(min_size=12, max_size=120))
def test_version_2_bytes_parse_or_raise_malformed(data: bytes) -> None:
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]  # force V=2 so the deeper checks are exercised
    try:
        parse(data)
    except MalformedPacket:
        pass


@given(rtp_packets(), st.data())
def test_truncated_packets_raise_or_parse_shorter(packet: RtpPacket, data: st.DataObject) -> None:
    raw = packet.to_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    try:
        short = parse(raw[:cut])
    except MalformedPacket:
        return
    # a cut that keeps the header intact can only have shortened the payload
    assert cut >= 12 + 4 * len(packet.csrcs)
    assert (short.sequence, short.ssrc, short.csrcs) == (packet.sequence, packet.ssrc, packet.csrcs)


def test_known_vector() -> None:
    data = bytes.fromhex(
        "b1"  # V=2, P=1, X=1, CC=1
        "88"  # M=1, PT=8 (PCMA)
        "fffe" "00012345" "deadbeef"
        "01020304"  # CSRC
        "bede" "0001" "10aa0000"  # RFC 8285 one-byte extension block, one word
        "d5d5d5"  # payload
        "000003"  # 3 bytes of padding
    )
    p = parse(data)
    assert p == RtpPacket(8, 0xFFFE, 0x12345, 0xDEADBEEF, b"\xd5\xd5\xd5", True, (0x01020304,),
                          (0xBEDE, bytes.fromhex("10aa0000")), 3)
    assert p.to_bytes() == data


@pytest.mark.parametrize("data, why", [
    (b"\x80\x00" + b"\x00" * 9, "11 bytes"),
    (b"\x40" + b"\x00" * 11, "version 1"),
    (b"\xc0" + b"\x00" * 11, "version 3"),
    (b"\x82" + b"\x00" * 15, "CC=2 but one CSRC"),
    (b"\x90" + b"\x00" * 13, "extension header cut"),
    (b"\x90" + b"\x00" * 11 + b"\xbe\xde\x00\x02" + b"\x00" * 4, "extension body cut"),
    (b"\xa0" + b"\x00" * 11 + b"\x01\x00", "padding count 0"),
    (b"\xa0" + b"\x00" * 11 + b"\x01\x04", "padding longer than the body"),
    (b"\xa0" + b"\x00" * 11, "padding bit with no body"),
])
def test_malformed_raise(data: bytes, why: str) -> None:
    with pytest.raises(MalformedPacket):
        parse(data)


def test_extension_length_must_be_word_aligned() -> None:
    with pytest.raises(ValueError):
        RtpPacket(0, 1, 2, 3, extension=(1, b"abc")).to_bytes()


def test_padding_only_packet_round_trips() -> None:
    p = RtpPacket(0, 1, 2, 3, padding=1)
    assert p.to_bytes()[-1] == 1 and parse(p.to_bytes()) == p


@given(u16, u16)
def test_seq_diff(a: int, b: int) -> None:
    d = seq_diff(a, b)
    assert -32768 <= d <= 32767
    assert (b + d) & 0xFFFF == a
    if d != -32768:
        assert seq_diff(b, a) == -d


@given(u32, u32)
def test_ts_diff(a: int, b: int) -> None:
    d = ts_diff(a, b)
    assert -(1 << 31) <= d < (1 << 31)
    assert (b + d) & 0xFFFFFFFF == a


def test_diffs_across_wrap() -> None:
    assert seq_diff(0, 65535) == 1 and seq_diff(65535, 0) == -1 and seq_diff(5, 65530) == 11
    assert ts_diff(80, 0xFFFFFFF0) == 96 and ts_diff(0xFFFFFFF0, 80) == -96


# -- an independent parser: aiortc ------------------------------------------------------------------

@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=80).map(lambda b: bytes([0x80 | (b[0] & 0x2F)]) + b[1:] if b else b))
def test_acceptance_agrees_with_aiortc(data: bytes) -> None:
    """Without a header extension (aiortc interprets those), both accept exactly the same bytes."""
    try:
        theirs = AiortcRtpPacket.parse(data)
    except ValueError:
        theirs = None
    try:
        ours = parse(data)
    except MalformedPacket:
        ours = None
    assert (ours is None) == (theirs is None)
    if ours is not None and theirs is not None:
        assert (ours.payload_type, ours.sequence, ours.timestamp, ours.ssrc, ours.marker, list(ours.csrcs),
                ours.payload, ours.padding) == (theirs.payload_type, theirs.sequence_number, theirs.timestamp,
                                                theirs.ssrc, bool(theirs.marker), theirs.csrc,
                                                bytes(theirs.payload), theirs.padding_size)


@given(rtp_packets())
def test_aiortc_reads_what_we_build(packet: RtpPacket) -> None:
    theirs = AiortcRtpPacket.parse(packet.to_bytes())
    assert (theirs.payload_type, theirs.sequence_number, theirs.timestamp, theirs.ssrc, bool(theirs.marker),
            theirs.csrc, theirs.payload, theirs.padding_size) == (
        packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.marker, list(packet.csrcs),
        packet.payload, packet.padding)


# -- an independent dissector: Wireshark -----------------------------------------------------------

def _pcap(datagrams: list[bytes], port: int) -> bytes:
    """A LINKTYPE_RAW (IPv4) capture of UDP datagrams to ``port``; checksums left at zero."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for i, payload in enumerate(datagrams):
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(ip), len(ip)) + ip)
    return b"".join(out)


def test_wireshark_dissects_our_packets(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    assert tshark, "tshark (Debian package) is required"
    packets = [
        RtpPacket(0, 65535, 0xFFFFFF00, 0x11223344, b"\xff" * 160),
        RtpPacket(8, 0, 160, 0x11223344, b"\xd5" * 160, marker=True, csrcs=(1, 2, 3)),
        RtpPacket(9, 1, 320, 0x11223344, b"\x00" * 80, extension=(0xBEDE, b"\x10\x01\x00\x00"), padding=4),
        RtpPacket(101, 2, 480, 0x11223344, bytes.fromhex("0b0a00a0")),
    ]
    pcap = tmp_path / "rtp.pcap"
    pcap.write_bytes(_pcap([p.to_bytes() for p in packets], 5004))
    fields = ["rtp.version", "rtp.p_type", "rtp.seq", "rtp.timestamp", "rtp.ssrc", "rtp.marker", "rtp.cc",
              "rtp.padding.count", "rtp.ext.profile", "_ws.malformed"]
    cmd = [tshark, "-n", "-r", str(pcap), "-d", "udp.port==5004,rtp", "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert len(out) == len(packets)
    for line, p in zip(out, packets, strict=True):
        version, pt, seq, ts, ssrc, marker, cc, pad, ext, malformed = line.split("|")
        assert (int(version), int(pt), int(seq), int(ts), int(ssrc, 16)) == (2, p.payload_type, p.sequence,
                                                                             p.timestamp, p.ssrc)
        assert marker in ("1", "True") if p.marker else marker in ("0", "False")
        assert int(cc) == len(p.csrcs)
        assert (int(pad) if pad else 0) == p.padding
        assert (int(ext, 16) if ext else None) == (p.extension[0] if p.extension else None)
        assert malformed == ""
