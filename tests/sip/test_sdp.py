"""Tests for acd.sip.sdp: RFC 4566 parsing and RFC 3264 offer/answer."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.sdp import (
    Codec,
    MediaCapabilities,
    SdpError,
    SessionDescription,
    accept_answer,
    answer_offer,
    build_offer,
    next_version,
    parse,
)

PJSUA = """\
v=0
o=- 3912345678 3912345678 IN IP4 192.168.1.20
s=pjmedia
b=AS:117
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 96 97 98 9 0 8 3 120 121
c=IN IP4 192.168.1.20
b=TIAS:96000
a=rtcp:4001 IN IP4 192.168.1.20
a=sendrecv
a=rtpmap:96 speex/16000
a=rtpmap:97 speex/8000
a=rtpmap:98 speex/32000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:120 telephone-event/16000
a=fmtp:120 0-16
a=rtpmap:121 telephone-event/8000
a=fmtp:121 0-16
a=ssrc:1813741398 cname:4d8a1c7e5b9f2a30
""".replace("\n", "\r\n")

CHROME = """\
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Fs0b
a=ice-pwd:4+b3nWyQIMp8Lr1c9y8ZXkqD
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:- 6d4e5a0c-0d3e-4c8e-9a1f-3b2c1d0e9f8a
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:3735928559 cname:k2Lx9Qw0
""".replace("\n", "\r\n")

SIPP = """\
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""  # bare LF on purpose

ASTERISK = """\
v=0
o=- 1719998871 1719998871 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 10.0.0.5
t=0 0
m=audio 10000 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""".replace("\n", "\r\n")

# A carrier offer listing PT 101 twice with two clock rates (pjproject issue #2675).
CARRIER = """\
v=0
o=- 0 0 IN IP4 192.0.2.165
s=on transit
c=IN IP4 10.100.1.21
t=0 0
m=audio 7882 RTP/AVP 8 101 101 18 0
b=AS:80
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/16000
a=rtpmap:101 telephone-event/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:0 PCMU/8000
a=fmtp:101 0-15
a=ptime:20
a=maxptime:40
a=sendrecv
""".replace("\n", "\r\n")

SAMPLES = [PJSUA, CHROME, SIPP, ASTERISK, CARRIER]
CAPS = MediaCapabilities()


def answer(offer: str | SessionDescription, caps: MediaCapabilities = CAPS, **kw):
    sdp = parse(offer) if isinstance(offer, str) else offer
    kw.setdefault("address", "203.0.113.7")
    kw.setdefault("port", 20000)
    return answer_offer(sdp, caps, session_id=42, session_version=1, **kw)


def simple(direction: str = "sendrecv", addr: str = "198.51.100.9", extra: str = "") -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n"
        f"{extra}m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a=fmtp:101 0-15\r\na={direction}\r\n"
    )


# --- parsing / serializing ------------------------------------------------------


def test_parse_pjsua_offer_fields() -> None:
    sdp = parse(PJSUA.encode())
    assert sdp.origin.sess_id == 3912345678 and sdp.origin.address == "192.168.1.20"
    assert sdp.name == "pjmedia" and sdp.bandwidths == ("AS:117",)
    assert sdp.attributes[0].name == "X-nat" and sdp.attributes[0].value == "0"
    (m,) = sdp.media
    assert (m.media, m.port, m.proto) == ("audio", 4000, "RTP/AVP")
    assert m.formats[:3] == ("96", "97", "98")
    assert m.connection is not None and m.connection.address == "192.168.1.20"
    assert m.rtcp == (4001, "192.168.1.20")
    names = [(c.payload_type, c.name, c.clock_rate) for c in m.codecs]
    assert names[:4] == [
        (96, "speex", 16000), (97, "speex", 8000), (98, "speex", 32000), (9, "G722", 8000),
    ]
    events = [c for c in m.codecs if c.is_telephone_event]
    found = [(c.payload_type, c.clock_rate, c.fmtp) for c in events]
    assert found == [(120, 16000, "0-16"), (121, 8000, "0-16")]
    assert m.attributes[-1].name == "ssrc"  # unknown attributes kept, in order


def test_static_payload_types_without_rtpmap() -> None:
    text = SIPP.replace("a=rtpmap:0 PCMU/8000\n", "")
    sdp = parse(text.replace("RTP/AVP 0", "RTP/AVP 0 8 9 18 77"))
    codecs = sdp.media[0].codecs
    assert [(c.payload_type, c.name, c.clock_rate) for c in codecs] == [
        (0, "PCMU", 8000), (8, "PCMA", 8000), (9, "G722", 8000), (18, "G729", 8000),
    ]  # 77 has no rtpmap: skipped


def test_chrome_offer_typed_access() -> None:
    sdp = parse(CHROME)
    m = sdp.media[0]
    opus = m.codecs[0]
    assert (opus.name, opus.clock_rate, opus.channels) == ("opus", 48000, 2)
    assert opus.fmtp == "minptime=10;useinbandfec=1"
    assert m.proto == "UDP/TLS/RTP/SAVPF" and sdp.origin.sess_id == 4611731400430051336
    assert sdp.attributes[0].value == "BUNDLE 0"


def test_asterisk_ptime_and_direction() -> None:
    sdp = parse(ASTERISK)
    m = sdp.media[0]
    assert (m.ptime, m.maxptime, m.direction, m.rtcp) == (20, 150, "sendrecv", None)
    assert sdp.media_direction(0) == "sendrecv" and not sdp.is_held(0)


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(text: str) -> None:
    sdp = parse(text)
    data = sdp.to_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert parse(data) == sdp
    assert parse(data).to_bytes() == data


def test_serialize_crlf_and_order() -> None:
    text = (
        "v=0\no=alice 2890844526 2890844527 IN IP4 host.example.com\ns=Session\n"
        "u=http://example.com\ni=info\nc=IN IP4 224.2.17.12/127\nt=2873397496 2873404696\n"
        "r=7d 1h 0 25h\nk=prompt\na=recvonly\nm=audio 49170/2 RTP/AVP 0\ni=media title\n"
        "b=AS:64\nm=video 51372 RTP/AVP 99\nc=IN IP6 2001:db8::1\na=rtpmap:99 h263-1998/90000\n"
    )
    sdp = parse(text)
    assert sdp.media[0].port_count == 2 and sdp.media[0].extra == (("i", "media title"),)
    assert sdp.extra == (
        ("i", "info"), ("u", "http://example.com"), ("r", "7d 1h 0 25h"), ("k", "prompt"),
    )
    lines = sdp.to_text().split("\r\n")
    assert lines[:7] == [
        "v=0", "o=alice 2890844526 2890844527 IN IP4 host.example.com", "s=Session",
        "i=info", "u=http://example.com", "c=IN IP4 224.2.17.12/127", "t=2873397496 2873404696",
    ]
    assert lines[7:10] == ["r=7d 1h 0 25h", "k=prompt", "a=recvonly"]
    assert lines[10] == "m=audio 49170/2 RTP/AVP 0"
    assert parse(sdp.to_bytes()) == sdp


def test_lenient_receive() -> None:
    text = (
        "v=0\r\n\r\no=- 1 1 IN IP4 h\r\nx=unknown\r\n"
        "c=IN IP4 10.1.1.1\r\nm=audio 5 RTP/AVP 0 \r\n"
    )
    sdp = parse(text)
    assert sdp.name == "-" and sdp.times == ("0 0",)  # missing s= and t= tolerated
    assert sdp.media[0].formats == ("0",)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "v=0"),
        ("v=1\no=- 1 1 IN IP4 h\ns=-\nt=0 0\n", "v=1"),
        ("o=- 1 1 IN IP4 h\nv=0\n", "o=-"),
        ("v=0\ns=-\nt=0 0\n", "o="),
        ("v=0\no=- 1 IN IP4 h\n", "o=- 1 IN IP4 h"),
        ("v=0\no=- x 1 IN IP4 h\n", "o=- x 1"),
        ("v=0\no=- 1 1 IN IP4 h\no=- 1 1 IN IP4 h\n", "o="),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio abc RTP/AVP 0\n", "m=audio abc"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 70000 RTP/AVP 0\n", "m=audio 70000"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 4000/ RTP/AVP 0\n", "m=audio 4000/"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 4000\n", "m=audio 4000"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IP4\n", "c=IN IP4"),
        ("v=0\no=- 1 1 IN IP4 h\nthis is not sdp\n", "this is not sdp"),
        ("v=0\no=- 1 1 IN IP4 h\ns=a\rb\n", "s=a"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio ١٢ RTP/AVP 0\n", "m=audio"),
    ],
)
def test_malformed_raises_sdp_error(text: str, needle: str) -> None:
    with pytest.raises(SdpError) as info:
        parse(text)
    assert isinstance(info.value, RemoteProtocolError) and info.value.status == 400
    assert needle in info.value.reason


def test_non_utf8_and_wrong_type() -> None:
    with pytest.raises(SdpError):
        parse(b"v=0\r\no=\xff\xfe 1 1 IN IP4 h\r\n")
    with pytest.raises(LocalProtocolError):
        parse(42)  # type: ignore[arg-type]


# --- offer / answer ---------------------------------------------------------------


def test_answer_pjsua_offer() -> None:
    sdp, streams = answer(PJSUA)
    (s,) = streams
    assert (s.payload_type, s.codec, s.clock_rate, s.telephone_event_pt) == (0, "PCMU", 8000, 121)
    assert (s.remote_address, s.remote_port, s.remote_rtcp_port) == ("192.168.1.20", 4000, 4001)
    assert (s.direction, s.remote_hold, s.ptime, s.local_port) == ("sendrecv", False, 20, 20000)
    text = sdp.to_text()
    assert "m=audio 20000 RTP/AVP 0 121\r\n" in text
    assert "a=rtpmap:121 telephone-event/8000\r\na=fmtp:121 0-16\r\n" in text
    assert "c=IN IP4 203.0.113.7\r\n" in text and "o=- 42 1 IN IP4 203.0.113.7\r\n" in text
    assert parse(sdp.to_bytes()) == sdp


def test_carrier_duplicate_telephone_event_pt() -> None:
    m = parse(CARRIER).media[0]
    events = [(c.payload_type, c.clock_rate, c.fmtp) for c in m.codecs if c.is_telephone_event]
    assert events == [(101, 16000, "0-15"), (101, 8000, "0-15")]
    assert m.codecs[-2].fmtp == "annexb=no"
    sdp, (s,) = answer(CARRIER, prefer_offerer_order=True)
    assert (s.codec, s.telephone_event_pt, s.ptime) == ("PCMA", 101, 20)
    assert sdp.media[0].formats == ("8", "101")


def test_codec_order_parameter_and_multiple_codecs() -> None:
    _, (local_first,) = answer(ASTERISK)
    assert local_first.codec == "PCMU"
    _, (offer_first,) = answer(ASTERISK, prefer_offerer_order=True)
    assert offer_first.codec == "PCMA"
    sdp, _ = answer(ASTERISK, prefer_offerer_order=True, multiple_codecs=True)
    assert sdp.media[0].formats == ("8", "0", "101")


def test_g722_sample_rate() -> None:
    caps = MediaCapabilities(codecs=(Codec(9, "G722", 8000), Codec(0, "PCMU", 8000)))
    _, (s,) = answer(PJSUA, caps)
    assert (s.codec, s.clock_rate, s.sample_rate) == ("G722", 8000, 16000)
    assert s.telephone_event_pt == 121


def test_dynamic_payload_type_preserved() -> None:
    offer = simple().replace("RTP/AVP 0 101", "RTP/AVP 107 101") + "a=rtpmap:107 opus/48000/2\r\n"
    offer = offer.replace("telephone-event/8000", "telephone-event/48000")
    caps = MediaCapabilities(codecs=(Codec(111, "OPUS", 48000, 2, "useinbandfec=1"),))
    sdp, (s,) = answer(offer, caps)
    assert (s.payload_type, s.channels, s.telephone_event_pt) == (107, 2, 101)
    assert sdp.media[0].formats == ("107", "101")
    assert sdp.media[0].values("rtpmap")[0] == "107 opus/48000/2"  # offerer's spelling echoed
    assert "107 useinbandfec=1" in sdp.media[0].values("fmtp")


def test_ptime_honoured_and_clamped() -> None:
    sdp, (s,) = answer(simple(extra="").replace("a=sendrecv", "a=ptime:30\r\na=sendrecv"))
    assert s.ptime == 30 and sdp.media[0].ptime == 30
    _, (s,) = answer(simple().replace("a=sendrecv", "a=ptime:40\r\na=maxptime:30"))
    assert s.ptime == 30


def test_telephone_event_not_offered_or_not_supported() -> None:
    _, (s,) = answer(SIPP)
    assert s.telephone_event_pt is None
    sdp, (s,) = answer(ASTERISK, MediaCapabilities(telephone_event=None))
    assert s.telephone_event_pt is None and sdp.media[0].formats == ("0",)


@pytest.mark.parametrize(
    ("offered", "answered", "held"),
    [("sendrecv", "sendrecv", False), ("sendonly", "recvonly", True),
     ("recvonly", "sendonly", False), ("inactive", "inactive", True)],
)
def test_direction_answer_rfc3264_6_1(offered: str, answered: str, held: bool) -> None:
    sdp, (s,) = answer(simple(offered))
    assert sdp.media[0].direction == answered == s.direction
    assert s.remote_hold is held and parse(simple(offered)).is_held(0) is held


def test_old_style_hold_0000() -> None:
    offer = simple(addr="0.0.0.0")
    assert parse(offer).is_held(0)
    _, (s,) = answer(offer)
    assert s.remote_hold and s.direction == "recvonly"  # nothing can be sent to 0.0.0.0


def test_session_level_direction_and_media_override() -> None:
    text = simple("sendonly").replace("a=sendonly\r\n", "")
    offer = parse(text.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n"))
    assert offer.direction == "sendonly" and offer.media[0].direction is None
    assert offer.media_direction(0) == "sendonly"
    override = parse(simple("sendrecv").replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n"))
    assert override.media_direction(0) == "sendrecv" and not override.is_held(0)


def test_hold_then_unhold_and_local_hold() -> None:
    first, _ = answer(simple())
    held_answer, (held,) = answer(simple("sendonly"))
    assert held.remote_hold
    resumed_answer, (resumed,) = answer(simple("sendrecv"))
    assert not resumed.remote_hold and resumed.direction == "sendrecv"
    # we hold the remote: our wish sendonly, offer sendrecv -> answer sendonly
    _, (ours,) = answer(simple(), direction="sendonly")
    assert ours.direction == "sendonly"
    assert next_version(first, held_answer).origin.sess_version == 2
    assert next_version(first, resumed_answer) is first


def test_video_rejected_with_port_zero() -> None:
    offer = ASTERISK + "m=video 10002 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n"
    sdp, (s,) = answer(offer)
    assert [(m.media, m.port) for m in sdp.media] == [("audio", 20000), ("video", 0)]
    assert sdp.media[1].formats == ("99",) and s.index == 0


def test_first_audio_without_common_codec_rejected() -> None:
    offer = (
        "v=0\r\no=- 5 5 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=video 7000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
        "m=audio 7002 RTP/AVP 97\r\na=rtpmap:97 speex/8000\r\n"
        "m=audio 7004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n"
        "m=audio 7006 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n"
        "m=audio 7008 RTP/AVP 8\r\n"
    )
    sdp, streams = answer(offer)
    assert [m.port for m in sdp.media] == [0, 0, 0, 20000, 0]  # one audio stream by default
    assert [(s.index, s.remote_address, s.remote_port) for s in streams] == [(3, "10.0.0.2", 7006)]
    sdp, streams = answer(offer, max_audio_streams=2)
    assert [m.port for m in sdp.media] == [0, 0, 0, 20000, 20002]
    assert [s.codec for s in streams] == ["PCMU", "PCMA"]


def test_webrtc_offer_rejected_on_plain_trunk() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        answer(CHROME)
    assert info.value.status == 488 and "UDP/TLS/RTP/SAVPF" in info.value.reason


def test_488_when_nothing_matches() -> None:
    for offer in (
        SIPP.replace("RTP/AVP 0", "RTP/AVP 97").replace("0 PCMU", "97 speex"),
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n",
        SIPP.replace("6000", "0"),
    ):
        with pytest.raises(RemoteProtocolError) as info:
            answer(offer)
        assert info.value.status == 488 and not isinstance(info.value, SdpError)


def test_missing_connection_is_400() -> None:
    with pytest.raises(SdpError) as info:
        answer(SIPP.replace("c=IN IP4 127.0.0.1\n", ""))
    assert info.value.status == 400


def test_ipv6() -> None:
    offer = simple().replace("IN IP4 198.51.100.9", "IN IP6 2001:db8::9")
    sdp, (s,) = answer(offer, address="2001:db8::7")
    assert s.remote_address == "2001:db8::9"
    assert sdp.origin.addrtype == "IP6" and sdp.connection is not None
    assert str(sdp.connection) == "IN IP6 2001:db8::7"
    assert parse(sdp.to_bytes()) == sdp


def test_local_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        answer(SIPP, port=0)
    with pytest.raises(LocalProtocolError):
        MediaCapabilities(protos=frozenset({"RTP/SAVP"}))
    with pytest.raises(LocalProtocolError):
        MediaCapabilities(codecs=())
    with pytest.raises(LocalProtocolError):
        answer(SIPP, address="bad host")
    with pytest.raises(LocalProtocolError):
        answer(SIPP, direction="sideways")  # type: ignore[arg-type]


# --- our offers ---------------------------------------------------------------------


def offer_sdp(**kw) -> SessionDescription:
    return build_offer(
        CAPS, address="203.0.113.7", port=40000, session_id=9, session_version=1, **kw
    )


def their_answer(media: str, addr: str = "192.0.2.5") -> str:
    return f"v=0\r\no=- 77 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n{media}"


def test_build_offer() -> None:
    sdp = offer_sdp()
    text = sdp.to_text()
    assert "m=audio 40000 RTP/AVP 0 8 9 101\r\n" in text
    assert "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n" in text
    assert parse(text) == sdp


def test_accept_answer() -> None:
    reply = their_answer(
        "m=audio 5004 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:5009\r\n"
    )
    (s,) = accept_answer(offer_sdp(), parse(reply))
    assert (s.codec, s.payload_type, s.telephone_event_pt) == ("PCMA", 8, 101)
    assert (s.remote_address, s.remote_port) == ("192.0.2.5", 5004)
    assert (s.remote_rtcp_address, s.remote_rtcp_port, s.local_port) == ("192.0.2.5", 5009, 40000)
    assert s.direction == "sendrecv" and not s.remote_hold
    # the sipp/Asterisk answers work as answers too
    assert accept_answer(offer_sdp(), parse(SIPP))[0].codec == "PCMU"


def test_accept_answer_directions() -> None:
    recvonly = parse(their_answer("m=audio 5004 RTP/AVP 0\r\na=recvonly\r\n"))
    (s,) = accept_answer(offer_sdp(), recvonly)
    assert s.direction == "sendonly" and not s.remote_hold
    (s,) = accept_answer(offer_sdp(direction="sendonly"), recvonly)
    assert s.direction == "sendonly"
    (s,) = accept_answer(offer_sdp(direction="recvonly"), recvonly)
    assert s.direction == "inactive"
    old_hold = parse(their_answer("m=audio 5004 RTP/AVP 0\r\n", addr="0.0.0.0"))
    (s,) = accept_answer(offer_sdp(), old_hold)
    assert s.remote_hold and s.direction == "recvonly"


@pytest.mark.parametrize(
    ("media", "status"),
    [
        ("", 400),  # m= count differs
        ("m=audio 5004 RTP/AVP 0\r\nm=video 0 RTP/AVP 99\r\n", 400),
        ("m=video 5004 RTP/AVP 99\r\n", 400),
        ("m=audio 5004 RTP/SAVP 0\r\n", 400),
        ("m=audio 0 RTP/AVP 0\r\n", 488),
        ("m=audio 5004 RTP/AVP 97\r\na=rtpmap:97 speex/8000\r\n", 488),
        ("m=audio 5004 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n", 488),
    ],
)
def test_accept_answer_unusable(media: str, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        accept_answer(offer_sdp(), parse(their_answer(media)))
    assert info.value.status == status


def test_next_version() -> None:
    first = offer_sdp()
    same = build_offer(CAPS, address="203.0.113.7", port=40000, session_id=1234, session_version=99)
    assert next_version(first, same) is first  # RFC 3264 §8: unchanged, same version
    hold = next_version(first, offer_sdp(direction="sendonly"))
    assert hold.origin == dataclasses.replace(first.origin, sess_version=2)
    assert hold.media[0].direction == "sendonly"
    again = next_version(hold, offer_sdp())
    assert again.origin.sess_version == 3 and again.media == first.media


# --- robustness -----------------------------------------------------------------------

_FRAGMENTS = [
    "v=0", "v=1", "s=-", "s=",
    "c=IN IP4 0.0.0.0", "c=IN IP6 2001:db8::1", "c=IN", "t=0 0", "b=AS:64", "i=x", "u=u", "r=1 2",
    "z=0", "k=clear:x", "x=y", "m=audio 4000 RTP/AVP 0 8 101", "m=audio 0 RTP/AVP 0",
    "m=video 5000 RTP/AVP 96", "m=audio 4000/2 RTP/SAVP 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=audio x RTP/AVP", "m=audio 4000 RTP/AVP", "a=rtpmap:101 telephone-event/8000",
    "a=rtpmap:111 opus/48000/2", "a=rtpmap:96 x", "a=rtpmap:", "a=fmtp:101 0-16", "a=fmtp:x",
    "a=ptime:20", "a=ptime:0", "a=ptime:nan", "a=maxptime:10", "a=rtcp:4001 IN IP4 1.2.3.4",
    "a=rtcp:99999", "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv", "a=", "a=:",
    "a=sendonly:x", "",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_arbitrary_input_parses_or_raises_sdp_error(data: str | bytes) -> None:
    with contextlib.suppress(SdpError):
        parse(data)


def _exercise(sdp: SessionDescription) -> None:
    for index, media in enumerate(sdp.media):
        assert isinstance(media.codecs, list)
        assert media.ptime is None or media.ptime > 0
        assert media.maxptime is None or media.maxptime > 0
        assert media.rtcp is None or 0 <= media.rtcp[0] <= 65535
        assert media.direction in (None, "sendrecv", "sendonly", "recvonly", "inactive")
        assert sdp.media_direction(index) in ("sendrecv", "sendonly", "recvonly", "inactive")
        assert isinstance(sdp.is_held(index), bool)
    try:
        answer(sdp)
    except RemoteProtocolError as exc:
        assert exc.status in (400, 488)
    with contextlib.suppress(RemoteProtocolError):
        accept_answer(offer_sdp(), sdp)


_FRAGMENT = st.sampled_from(_FRAGMENTS)
_VALUE = st.text(st.characters(exclude_characters="\n"), max_size=15)
_TYPED_LINE = st.builds("{}={}".format, st.sampled_from("vosicbtzamkrux"), _VALUE)
_SDP_LINES = st.lists(_FRAGMENT | _TYPED_LINE, max_size=14)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([
        "v=0", "v=0\no=x 99999999999999999999 0 IN IP6 ::1",
        "v=0\no=- 1 2 IN IP4 10.0.0.1\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0 8 101",
    ]),
    _SDP_LINES,
    st.sampled_from(["\r\n", "\n"]),
)
def test_sdp_like_input_round_trips(head: str, lines: list[str], eol: str) -> None:
    text = eol.join([head, *lines])
    try:
        sdp = parse(text)
    except SdpError:
        return
    again = parse(sdp.to_bytes())
    assert again == sdp
    assert again.to_bytes() == sdp.to_bytes()
    _exercise(sdp)
