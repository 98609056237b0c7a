"""media/rtcp.py: SR/RR/SDES/BYE/APP/XR build and parse, compound rules, malformed input, NTP
helpers, the §6.3 interval; cross-checked against aiortc's RTCP code and Wireshark's dissector."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from aiortc import rtp as aiortc_rtp
from hypothesis import given
from hypothesis import strategies as st

from media.errors import MalformedPacket
from media.rtcp import (
    APP,
    BYE,
    CNAME,
    RR,
    SDES,
    SR,
    XR,
    App,
    Bye,
    ExtendedReport,
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    VoipMetrics,
    XrBlock,
    build_compound,
    ntp_from_seconds,
    ntp_middle32,
    parse_compound,
    rtcp_interval,
    seconds_from_ntp,
    update_avg_rtcp_size,
)

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
words = st.binary(max_size=24).map(lambda b: b[: len(b) - len(b) % 4])

blocks = st.builds(ReportBlock, u32, u8, st.integers(-0x800000, 0x7FFFFF), u32, u32, u32, u32)
senders = st.builds(SenderReport, u32, st.integers(0, (1 << 64) - 1), u32, u32, u32,
                    st.lists(blocks, max_size=31).map(tuple), words)
receivers = st.builds(ReceiverReport, u32, st.lists(blocks, max_size=31).map(tuple), words)
items = st.tuples(st.integers(1, 255), st.binary(max_size=255))
sdes = st.builds(SourceDescription, st.lists(st.builds(SdesChunk, u32, st.lists(items, max_size=4).map(tuple)),
                                             max_size=31).map(tuple))
byes = st.builds(Bye, st.lists(u32, max_size=31).map(tuple),
                 st.none() | st.text(max_size=60).filter(lambda t: len(t.encode()) <= 255))
apps = st.builds(App, st.integers(0, 31), u32, st.text(st.characters(max_codepoint=255), min_size=4, max_size=4),
                 words)
voip = st.builds(VoipMetrics, u32, u8, u8, u8, u8, u16, u16, u16, u16, st.integers(-128, 127),
                 st.integers(-128, 127), u8, u8, u8, u8, u8, u8, u8, u16, u16, u16)
xrs = st.builds(ExtendedReport, u32, st.lists(voip | st.builds(XrBlock, st.integers(0, 255).filter(lambda t: t != 7),
                                                                u8, words), max_size=4).map(tuple))
unknown = st.builds(UnknownRtcp, st.sampled_from([205, 206, 208, 210]), st.integers(0, 31), words)
any_packet = senders | receivers | sdes | byes | apps | xrs | unknown


@given(st.lists(any_packet, min_size=1, max_size=6))
def test_round_trip_any_packets(packets: list) -> None:
    data = build_compound(packets, strict=False)
    assert parse_compound(data, strict=False) == packets


@given(senders | receivers, sdes, st.lists(apps | xrs, max_size=2), st.none() | byes)
def test_round_trip_strict_compound(report, desc, extra, bye) -> None:
    desc = SourceDescription(desc.chunks[:30] + (SdesChunk(1, ((CNAME, b"agent@homeline"),)),))
    packets = [report, desc, *extra] + ([bye] if bye else [])
    assert parse_compound(build_compound(packets)) == packets


@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_parse_or_raise_malformed(data: bytes, strict: bool) -> None:
    try:
        parse_compound(data, strict=strict)
    except MalformedPacket:
        pass


@given(st.lists(any_packet, min_size=1, max_size=4), st.data())
def test_corrupted_compound_parse_or_raise_malformed(packets: list, data: st.DataObject) -> None:
    raw = bytearray(build_compound(packets, strict=False))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(u8)
    try:
        parse_compound(bytes(raw), strict=False)
    except MalformedPacket:
        pass


@given(st.lists(any_packet, min_size=1, max_size=4), st.data())
def test_truncation_raises_unless_at_a_packet_boundary(packets: list, data: st.DataObject) -> None:
    encoded = [p.to_bytes() for p in packets]
    raw = b"".join(encoded)
    cut = data.draw(st.integers(0, len(raw) - 1))
    boundaries = {sum(len(e) for e in encoded[:i]): i for i in range(1, len(encoded))}
    if cut in boundaries:
        assert parse_compound(raw[:cut], strict=False) == packets[: boundaries[cut]]
    else:
        with pytest.raises(MalformedPacket):
            parse_compound(raw[:cut], strict=False)


def test_known_sr_and_rr_bytes() -> None:
    sr = bytes.fromhex("80c80006" "12345678" "83aa7e80" "80000000" "000000a0" "0000000a" "00000640")
    assert parse_compound(sr) == [SenderReport(0x12345678, (0x83AA7E80 << 32) | 0x80000000, 160, 10, 1600)]
    assert seconds_from_ntp(0x83AA7E80 << 32 | 0x80000000) == 0.5  # 0x83aa7e80 is the Unix epoch in NTP
    rr = bytes.fromhex("81c90007" "cafebabe"
                       "12345678" "40" "fffffd" "00010005" "00000020" "7e800000" "00018000")
    block = ReportBlock(0x12345678, 64, -3, 0x10005, 32, 0x7E800000, 0x18000)
    assert parse_compound(rr) == [ReceiverReport(0xCAFEBABE, (block,))]
    assert ReceiverReport(0xCAFEBABE, (block,)).to_bytes() == rr


def test_known_sdes_bye_app_bytes() -> None:
    cname = SourceDescription.cname(0x01020304, "ab")
    assert cname.to_bytes() == bytes.fromhex("81ca0003" "01020304" "0102" "6162" "00000000")
    assert Bye((7,), "hi").to_bytes() == bytes.fromhex("81cb0002" "00000007" "02686900")
    assert Bye((7,)).to_bytes() == bytes.fromhex("81cb0001" "00000007")
    assert App(5, 9, "HOME", b"\x01\x02\x03\x04").to_bytes() == bytes.fromhex("85cc0003" "00000009"
                                                                               "484f4d45" "01020304")
    assert parse_compound(cname.to_bytes(), strict=False)[0].chunks[0].cname == "ab"


def test_voip_metrics_layout() -> None:
    """RFC 3611 §4.7: 36 octets, block length 8, fields at their offsets."""
    vm = VoipMetrics(0xAABBCCDD, loss_rate=12, discard_rate=3, round_trip_delay=180, signal_level=-20,
                     noise_level=-60, r_factor=80, mos_lq=41, mos_cq=39, jb_nominal=40, jb_maximum=80,
                     jb_abs_max=200)
    raw = vm.to_bytes()
    assert len(raw) == 36 and raw[:4] == b"\x07\x00\x00\x08"
    assert raw[8] == 12 and raw[9] == 3 and struct.unpack("!H", raw[16:18])[0] == 180
    assert struct.unpack("!bb", raw[20:22]) == (-20, -60)
    assert raw[24:28] == bytes([80, 127, 41, 39])
    assert struct.unpack("!HHH", raw[30:36]) == (40, 80, 200)
    packet = ExtendedReport(1, (vm, XrBlock(4, 0, b"\x00" * 8)))
    assert parse_compound(packet.to_bytes(), strict=False) == [packet]


def test_cumulative_lost_is_clamped_to_24_bits() -> None:
    hi = ReportBlock(1, 0, 10_000_000, 0, 0).to_bytes()
    lo = ReportBlock(1, 0, -10_000_000, 0, 0).to_bytes()
    assert hi[5:8] == b"\x7f\xff\xff" and lo[5:8] == b"\x80\x00\x00"
    assert ReportBlock.parse(lo, 0).cumulative_lost == -0x800000


@pytest.mark.parametrize("data, strict, why", [
    (b"\x80\xc9\x00", True, "shorter than a header"),
    (b"\x40\xc9\x00\x01\x00\x00\x00\x01", True, "version 1"),
    (b"\x80\xc9\x00\x02\x00\x00\x00\x01", True, "length beyond the datagram"),
    (b"\x81\xc9\x00\x01\x00\x00\x00\x01", True, "RC=1 without a block"),
    (b"\x80\xc8\x00\x01\x00\x00\x00\x01", True, "SR without sender info"),
    (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", True, "padding count 0"),
    (b"\xa0\xc9\x00\x01\x00\x00\x00\x05", True, "padding longer than the packet"),
    (bytes.fromhex("a0c90002" "00000001" "00000004" "80c90001" "00000002"), True, "padding not last"),
    (b"\x81\xca\x00\x01\x00\x00\x00\x01", False, "SDES chunk without a terminating null"),
    (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09ab", False, "SDES item longer than the chunk"),
    (b"\x82\xcb\x00\x01\x00\x00\x00\x01", False, "BYE SC=2 with one SSRC"),
    (b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc", False, "BYE reason longer than the packet"),
    (b"\x80\xcc\x00\x01\x00\x00\x00\x01", False, "APP without a name"),
    (b"\x80\xcf\x00\x02\x00\x00\x00\x01\x07\x00\x00\x01", False, "XR VoIP metrics with length 1"),
    (b"\x80\xcf\x00\x02\x00\x00\x00\x01\x04\x00\x00\x05", False, "XR block beyond the packet"),
    (b"\x80\xcc\x00\x02\x00\x00\x00\x01HOME", True, "strict: compound must start with SR/RR"),
])
def test_malformed_raise(data: bytes, strict: bool, why: str) -> None:
    with pytest.raises(MalformedPacket):
        parse_compound(data, strict=strict)


def test_reduced_size_rtcp_accepted_when_not_strict() -> None:
    data = Bye((5,), "done").to_bytes()
    assert parse_compound(data, strict=False) == [Bye((5,), "done")]


def test_padding_on_last_packet_is_stripped() -> None:
    rr = bytearray(ReceiverReport(3).to_bytes() + b"\x00\x00\x00\x04")
    rr[0] |= 0x20
    rr[3] = 2  # length now covers the padding word
    assert parse_compound(bytes(rr)) == [ReceiverReport(3)]


def test_unknown_packet_types_pass_through() -> None:
    nack = bytes.fromhex("81cd0003" "00000001" "00000002" "00050000")  # RFC 4585 generic NACK
    packets = parse_compound(ReceiverReport(1).to_bytes() + nack)
    assert packets[1] == UnknownRtcp(205, 1, bytes.fromhex("00000001" "00000002" "00050000"))
    assert build_compound(packets, strict=False) == ReceiverReport(1).to_bytes() + nack


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ReceiverReport(1, tuple(ReportBlock(i, 0, 0, 0, 0) for i in range(32))).to_bytes()
    with pytest.raises(ValueError):
        App(0, 1, "TOOLONG").to_bytes()
    with pytest.raises(ValueError):
        App(0, 1, "NAME", b"123").to_bytes()
    with pytest.raises(ValueError):
        SourceDescription((SdesChunk(1, ((CNAME, b"x" * 256),)),)).to_bytes()
    with pytest.raises(ValueError):
        Bye((1,), "é" * 200).to_bytes()
    with pytest.raises(ValueError):
        VoipMetrics(1, loss_rate=256).to_bytes()
    with pytest.raises(ValueError):
        ReportBlock(1 << 32, 0, 0, 0, 0).to_bytes()
    with pytest.raises(ValueError):
        build_compound([])


def test_strict_compound_rules() -> None:
    rr, cname, bye = ReceiverReport(1), SourceDescription.cname(1, "a@b"), Bye((1,))
    assert build_compound([rr, cname, bye])
    with pytest.raises(ValueError, match="start with SR or RR"):
        build_compound([cname, rr])
    with pytest.raises(ValueError, match="CNAME"):
        build_compound([rr, SourceDescription((SdesChunk(1, ((2, b"name"),)),))])
    with pytest.raises(ValueError, match="BYE"):
        build_compound([rr, bye, cname])


# -- NTP time --------------------------------------------------------------------------------------

def test_ntp_helpers() -> None:
    assert ntp_from_seconds(0.0) == 2_208_988_800 << 32
    assert ntp_from_seconds(1.25) & 0xFFFFFFFF == 1 << 30
    assert ntp_middle32(0x0123456789ABCDEF) == 0x456789AB
    t = 1_700_000_000.123456
    assert abs(seconds_from_ntp(ntp_from_seconds(t)) - t) < 1e-6
    assert ntp_middle32(ntp_from_seconds(t + 1.0)) - ntp_middle32(ntp_from_seconds(t)) == 65536
    # 2036 rollover: seconds wrap within 32 bits (RFC 3550 §4)
    assert ntp_from_seconds(2_085_978_496.5) >> 32 == 0


@given(st.floats(0, 2_000_000_000, allow_nan=False))
def test_ntp_monotone_and_precise(t: float) -> None:
    a, b = ntp_from_seconds(t), ntp_from_seconds(t + 0.001)
    assert b > a
    assert abs(seconds_from_ntp(a) - t) <= 1e-6


# -- §6.3 interval ---------------------------------------------------------------------------------

def test_interval_two_party_is_randomised_around_5_seconds() -> None:
    assert rtcp_interval(0.0) == pytest.approx(2.5)
    assert rtcp_interval(0.5) == pytest.approx(5.0)
    assert rtcp_interval(0.999999) == pytest.approx(7.5, abs=1e-5)
    assert rtcp_interval(0.5, initial=True) == pytest.approx(2.5)
    assert rtcp_interval(0.5, reconsideration=True) == pytest.approx(5.0 / (math.e - 1.5))
    samples = [rtcp_interval(i / 1000) for i in range(1000)]
    assert min(samples) >= 2.5 and max(samples) < 7.5 and sum(samples) / 1000 == pytest.approx(5.0, abs=0.01)


def test_interval_follows_bandwidth_for_large_sessions() -> None:
    # 400 members, 2 senders, 1 kB/s of RTCP: receivers share 75 % (§6.3.1)
    t = rtcp_interval(0.5, members=400, senders=2, we_sent=False, rtcp_bw=1000.0, avg_rtcp_size=100.0)
    assert t == pytest.approx(100.0 * 398 / 750.0)
    t = rtcp_interval(0.5, members=400, senders=2, we_sent=True, rtcp_bw=1000.0, avg_rtcp_size=100.0)
    assert t == pytest.approx(5.0)  # 100 * 2 / 250 = 0.8 s, raised to the minimum
    with pytest.raises(ValueError):
        rtcp_interval(1.0)
    with pytest.raises(ValueError):
        rtcp_interval(0.5, rtcp_bw=0)


def test_avg_rtcp_size() -> None:
    assert update_avg_rtcp_size(100.0, 260) == pytest.approx(110.0)


# -- an independent implementation: aiortc ---------------------------------------------------------

def test_aiortc_reads_what_we_build() -> None:
    block = ReportBlock(0x0BADF00D, 25, -7, 0x1FFFF, 123, 0x11112222, 0x33334444)
    sr = SenderReport(0xAABBCCDD, 0xE5E5E5E5_12345678, 99999, 77, 12320, (block,))
    ours = build_compound([sr, SourceDescription.cname(0xAABBCCDD, "agent7@homeline"), Bye((0xAABBCCDD,))])
    theirs = aiortc_rtp.RtcpPacket.parse(ours)
    assert [type(p).__name__ for p in theirs] == ["RtcpSrPacket", "RtcpSdesPacket", "RtcpByePacket"]
    info = theirs[0].sender_info
    assert (theirs[0].ssrc, info.ntp_timestamp, info.rtp_timestamp, info.packet_count, info.octet_count) == (
        0xAABBCCDD, 0xE5E5E5E5_12345678, 99999, 77, 12320)
    r = theirs[0].reports[0]
    assert (r.ssrc, r.fraction_lost, r.packets_lost, r.highest_sequence, r.jitter, r.lsr, r.dlsr) == (
        0x0BADF00D, 25, -7, 0x1FFFF, 123, 0x11112222, 0x33334444)
    assert theirs[1].chunks[0].items == [(CNAME, b"agent7@homeline")]
    assert theirs[2].sources == [0xAABBCCDD]


def test_we_read_what_aiortc_builds() -> None:
    info = aiortc_rtp.RtcpReceiverInfo(ssrc=5, fraction_lost=128, packets_lost=-2, highest_sequence=70000,
                                       jitter=40, lsr=1, dlsr=2)
    rr = aiortc_rtp.RtcpRrPacket(ssrc=9, reports=[info])
    chunk = aiortc_rtp.RtcpSourceInfo(ssrc=9, items=[(1, b"x@y"), (6, b"aiortc")])
    data = bytes(rr) + bytes(aiortc_rtp.RtcpSdesPacket(chunks=[chunk])) + bytes(aiortc_rtp.RtcpByePacket(sources=[9]))
    assert parse_compound(data) == [
        ReceiverReport(9, (ReportBlock(5, 128, -2, 70000, 40, 1, 2),)),
        SourceDescription((SdesChunk(9, ((CNAME, b"x@y"), (6, b"aiortc"))),)),
        Bye((9,)),
    ]


# -- an independent dissector: Wireshark -----------------------------------------------------------

def _pcap(datagrams: list[bytes], port: int) -> bytes:
    """A LINKTYPE_RAW (IPv4) capture of UDP datagrams to ``port``; checksums left at zero."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for i, payload in enumerate(datagrams):
        udp = struct.pack("!HHHH", 40001, port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(ip), len(ip)) + ip)
    return b"".join(out)


def test_wireshark_dissects_our_compounds(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    assert tshark, "tshark (Debian package) is required"
    block = ReportBlock(0x0BADF00D, 64, -3, 0x1FFFF, 160, 0x7E800000, 0x18000)
    sr = SenderReport(0xAABBCCDD, ntp_from_seconds(1_700_000_000.5), 8000, 50, 8000, (block,))
    first = build_compound([sr, SourceDescription.cname(0xAABBCCDD, "agent7@homeline"),
                            App(1, 0xAABBCCDD, "HOME", b"abcd"),
                            ExtendedReport(0xAABBCCDD, (VoipMetrics(0x0BADF00D, loss_rate=13, round_trip_delay=180,
                                                                    r_factor=80, mos_lq=42, mos_cq=39),))])
    second = build_compound([ReceiverReport(0x01020304, (block,)), SourceDescription.cname(0x01020304, "x@y"),
                             Bye((0x01020304,), "hangup")])
    pcap = tmp_path / "rtcp.pcap"
    pcap.write_bytes(_pcap([first, second], 5005))
    fields = ["rtcp.pt", "rtcp.senderssrc", "rtcp.timestamp.rtp", "rtcp.sender.packetcount",
              "rtcp.ssrc.identifier", "rtcp.ssrc.fraction", "rtcp.ssrc.cum_nr", "rtcp.ssrc.ext_high",
              "rtcp.ssrc.jitter", "rtcp.ssrc.lsr", "rtcp.ssrc.dlsr", "rtcp.sdes.text", "rtcp.app.name",
              "rtcp.xr.voipmetrics.rtdelay", "rtcp.xr.voipmetrics.rfactor", "rtcp.xr.voipmetrics.moscq",
              "rtcp.length_check", "_ws.malformed", "_ws.expert.severity"]
    cmd = [tshark, "-n", "-r", str(pcap), "-d", "udp.port==5005,rtcp", "-T", "fields", "-E", "separator=|",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert len(out) == 2
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out]
    a, b = rows
    assert a["rtcp.pt"].split(",") == [str(SR), str(SDES), str(APP), str(XR)]
    assert b["rtcp.pt"].split(",") == [str(RR), str(SDES), str(BYE)]
    assert int(a["rtcp.senderssrc"].split(",")[0], 16) == 0xAABBCCDD
    assert (a["rtcp.timestamp.rtp"], a["rtcp.sender.packetcount"]) == ("8000", "50")
    for row in rows:
        assert int(row["rtcp.ssrc.identifier"].split(",")[0], 16) == 0x0BADF00D
        assert row["rtcp.ssrc.fraction"].split(",")[0] == "64"
        assert row["rtcp.ssrc.cum_nr"].split(",")[0] == "-3"
        assert int(row["rtcp.ssrc.ext_high"].split(",")[0]) == 0x1FFFF
        assert row["rtcp.ssrc.jitter"].split(",")[0] == "160"
        assert int(row["rtcp.ssrc.lsr"].split(",")[0], 0) == 0x7E800000
        assert int(row["rtcp.ssrc.dlsr"].split(",")[0], 0) == 0x18000
        assert row["_ws.malformed"] == "" and row["_ws.expert.severity"] == ""  # no complaint at all
        assert set(row["rtcp.length_check"].split(",")) <= {"1", "True"}
    # Wireshark shows the BYE reason in the same text field as SDES items
    assert a["rtcp.sdes.text"] == "agent7@homeline" and b["rtcp.sdes.text"] == "x@y,hangup"
    assert a["rtcp.app.name"] == "HOME"
    assert (a["rtcp.xr.voipmetrics.rtdelay"], a["rtcp.xr.voipmetrics.rfactor"],
            a["rtcp.xr.voipmetrics.moscq"]) == ("180", "80", "3.9")
