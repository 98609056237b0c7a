"""NAT deployment (external address in Via, Contact and SDP; RTP port range) and delayed
offer, driven by hand-written SIP over a raw UDP socket."""

from __future__ import annotations

import re
import socket
import time

import pytest

from acd.sip.message import parse_message
from tests.harness import RunningServer

pytestmark = pytest.mark.interop

SDP_OFFER = ("v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")


class Phone:
    def __init__(self, srv: RunningServer) -> None:
        self.srv = srv
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.settimeout(2)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.settimeout(2)
        self.port = self.sip.getsockname()[1]
        self.call_id = f"nat-{time.monotonic_ns()}"

    def send(self, method: str, cseq: int, *, to_tag: str = "", body: str = "", branch: str = "") -> None:
        to = f"<sip:echo@127.0.0.1>{';tag=' + to_tag if to_tag else ''}"
        msg = (f"{method} sip:echo@127.0.0.1:{self.srv.sip_port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{branch or time.monotonic_ns()}\r\n"
               f"From: <sip:phone@127.0.0.1>;tag=p1\r\nTo: {to}\r\nCall-ID: {self.call_id}\r\n"
               f"CSeq: {cseq} {method}\r\nContact: <sip:phone@127.0.0.1:{self.port}>\r\nMax-Forwards: 70\r\n"
               + ("Content-Type: application/sdp\r\n" if body else "") + f"Content-Length: {len(body)}\r\n\r\n{body}")
        self.sip.sendto(msg.encode(), ("127.0.0.1", self.srv.sip_port))

    def final(self):
        while True:
            msg = parse_message(self.sip.recv(65535))
            if getattr(msg, "status", 0) >= 200:
                return msg


def echoed(phone: Phone, port: int, payload: bytes, packets: int = 25) -> bool:
    """Send a short stream (20 ms apart) and report whether the same audio comes back: the echo
    decodes through the jitter buffer and re-encodes, so it is its own stream (RFC 3550)."""
    for i in range(packets):
        phone.rtp.sendto(bytes([0x80, 0x00]) + (i + 1).to_bytes(2, "big") + (160 * i).to_bytes(4, "big")
                         + b"\x00\x00\x12\x34" + payload, ("127.0.0.1", port))
        time.sleep(0.02)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            data = phone.rtp.recv(2048)
        except socket.timeout:
            return False
        if data[1] & 0x7F == 0 and data[12:] == payload:
            return True
    return False


def sdp_address_and_port(body: bytes) -> tuple[str, int]:
    text = body.decode()
    return re.search(r"c=IN IP4 (\S+)", text).group(1), int(re.search(r"m=audio (\d+)", text).group(1))


def test_external_address_is_advertised_and_rtp_port_in_range(server_factory) -> None:
    srv = server_factory(sip_extra='external_address = "203.0.113.5"')
    phone = Phone(srv)
    phone.send("INVITE", 1, body=SDP_OFFER.format(port=phone.rtp.getsockname()[1]))
    ok = phone.final()
    assert ok.status == 200
    assert "203.0.113.5" in ok.headers.get("Contact")
    address, port = sdp_address_and_port(ok.body)
    assert address == "203.0.113.5"
    text = srv.config.read_text()
    low, high = (int(re.search(rf"{k} = (\d+)", text).group(1)) for k in ("port_min", "port_max"))
    assert low <= port <= high and port % 2 == 0  # even RTP port from the range (RFC 3550 §11)
    phone.send("ACK", 1, to_tag=ok.to.tag)
    # media: the echo test sends our audio back to where it came from (symmetric RTP)
    assert echoed(phone, port, b"\x90" * 160)
    phone.send("BYE", 2, to_tag=ok.to.tag)
    assert phone.final().status == 200


def test_delayed_offer_gets_offer_in_200_and_answer_in_ack(server: RunningServer) -> None:
    phone = Phone(server)
    phone.send("INVITE", 1)
    ok = phone.final()
    assert ok.status == 200 and ok.headers.get("Content-Type") == "application/sdp"
    _, port = sdp_address_and_port(ok.body)
    assert "PCMU" in ok.body.decode() and "telephone-event" in ok.body.decode()
    answer = SDP_OFFER.format(port=phone.rtp.getsockname()[1]).replace("0 101", "0")
    phone.send("ACK", 1, to_tag=ok.to.tag, body=answer)
    server.wait_log(r"call .* connected")
    assert echoed(phone, port, b"\xa5" * 160)
    phone.send("BYE", 2, to_tag=ok.to.tag)
    assert phone.final().status == 200


def test_delayed_offer_without_answer_in_ack_is_hung_up(server_factory) -> None:
    server = server_factory(sip_extra='external_address = "203.0.113.5"')
    phone = Phone(server)
    phone.send("INVITE", 1)
    ok = phone.final()
    phone.send("ACK", 1, to_tag=ok.to.tag)  # no answer: the session cannot work (§13.2.1)
    bye = parse_message(phone.sip.recv(65535))
    assert getattr(bye, "method", "") == "BYE"
    assert bye.top_via.host == "203.0.113.5"  # our own requests advertise the external address


def offer(port: int, formats: str, rtpmaps: str = "") -> str:
    return ("v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {formats}\r\n{rtpmaps}")


def test_no_common_codec_gets_488(server: RunningServer) -> None:
    phone = Phone(server)
    phone.send("INVITE", 1, body=offer(phone.rtp.getsockname()[1], "18", "a=rtpmap:18 G729/8000\r\n"))
    resp = phone.final()
    assert resp.status == 488
    server.wait_log(r"ended: rejected \(488\)")


def test_reinvite_changes_codec(server: RunningServer) -> None:
    phone = Phone(server)
    rtp_port = phone.rtp.getsockname()[1]
    phone.send("INVITE", 1, body=offer(rtp_port, "0 8"))
    ok = phone.final()
    assert re.search(r"m=audio \d+ RTP/AVP 0\b", ok.body.decode())  # our preference: PCMU
    phone.send("ACK", 1, to_tag=ok.to.tag)
    phone.send("INVITE", 2, to_tag=ok.to.tag, body=offer(rtp_port, "8"))  # now PCMA only
    again = phone.final()
    assert again.status == 200 and re.search(r"m=audio \d+ RTP/AVP 8\b", again.body.decode())
    # same session, next version (RFC 3264 §8)
    o1 = re.search(r"o=\S+ (\d+) (\d+)", ok.body.decode()).groups()
    o2 = re.search(r"o=\S+ (\d+) (\d+)", again.body.decode()).groups()
    assert o1[0] == o2[0] and int(o2[1]) == int(o1[1]) + 1
    phone.send("ACK", 2, to_tag=ok.to.tag)
    phone.send("BYE", 3, to_tag=ok.to.tag)
    assert phone.final().status == 200


def test_opus_offer_is_answered_when_configured(server_factory) -> None:
    srv = server_factory(rtp_extra='codecs = ["opus", "PCMU"]')
    phone = Phone(srv)
    phone.send("INVITE", 1, body=offer(phone.rtp.getsockname()[1], "96 0", "a=rtpmap:96 opus/48000/2\r\n"))
    ok = phone.final()
    assert ok.status == 200 and "a=rtpmap:96 opus/48000/2" in ok.body.decode()
    phone.send("ACK", 1, to_tag=ok.to.tag)
    phone.send("BYE", 2, to_tag=ok.to.tag)
    assert phone.final().status == 200


def test_bad_media_is_dropped_and_counted_and_the_call_goes_on(server: RunningServer) -> None:
    phone = Phone(server)
    phone.send("INVITE", 1, body=SDP_OFFER.format(port=phone.rtp.getsockname()[1]))
    ok = phone.final()
    _, port = sdp_address_and_port(ok.body)
    phone.send("ACK", 1, to_tag=ok.to.tag)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    good = bytes([0x80, 0x00, 0x00, 0x01]) + b"\x00" * 8 + b"\x90" * 160
    stranger.sendto(good, ("127.0.0.1", port))  # RTP from an address the SDP did not name
    stranger.close()
    for junk in (b"\x00" * 5, b"\x40" + b"\x00" * 20, bytes([0xA0, 0, 0, 9]) + b"\x00" * 8 + b"\xff"):
        phone.rtp.sendto(junk, ("127.0.0.1", port))  # truncated, version 1, bad padding
    phone.rtp.sendto(bytes([0x80, 0x00, 0x00, 0x02]) + b"\x00" * 8, ("127.0.0.1", port))  # empty payload
    phone.rtp.sendto(b"\x80\xc9\x00", ("127.0.0.1", port + 1))  # truncated RTCP
    assert echoed(phone, port, b"\x90" * 160)  # the call's media still works
    media = server.status()["media"]
    assert media["wrong_source"] >= 1 and media["malformed_rtp"] == 3 and media["malformed_rtcp"] == 1
    phone.send("BYE", 2, to_tag=ok.to.tag)
    assert phone.final().status == 200
