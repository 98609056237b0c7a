"""Tests for acd.sip.dialog (RFC 3261 §12)."""

from __future__ import annotations

from typing import Any

import pytest

from acd.sip.dialog import Dialog, DialogId, new_call_id, new_tag
from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.message import Request, parse_message
from acd.sip.uri import parse_uri
from tests.sip.vt import UDP, build_request, build_response, request, response

RR = ("<sip:p1.example.net;lr>", "<sip:p2.example.net;lr;ftag=x>", "<sip:p3.example.net;lr>")


def uas_dialog(rr: tuple[str, ...] = RR, cseq: int = 5, **kw: Any) -> Dialog:
    extra = tuple(("Record-Route", r) for r in rr)
    req = request(build_request("INVITE", cseq=cseq, extra=extra, **kw))
    return Dialog.from_uas(req, "local-tag", UDP)


def our_invite() -> Request:
    req = Request(method="INVITE", uri="sip:bob@192.0.2.10")
    h = req.headers
    h.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKours")
    h.add("From", "\"Alice\" <sip:alice@10.0.0.1>;tag=ours")
    h.add("To", "<sip:bob@192.0.2.10>")
    h.add("Call-ID", "cid@10.0.0.1")
    h.add("CSeq", "3 INVITE")
    return req


def uac_dialog(rr: tuple[str, ...] = RR, contact: str | None = "sip:bob@192.0.2.99:5080") -> Dialog:
    req = our_invite()
    resp = response(build_response(req, 200, to_tag="theirs", contact_uri=contact, record_route=rr))
    return Dialog.from_uac(req, resp, UDP)


def test_uas_dialog_from_invite() -> None:
    d = uas_dialog()
    assert d.id == DialogId("call-1@192.0.2.10", "local-tag", "peer-tag")
    assert d.remote_target == "sip:peer@192.0.2.10:5060"
    assert d.route_set == list(RR)  # §12.1.1: Record-Route in order
    assert d.remote_seq == 5 and d.local_seq == 0
    assert d.state == "early" and d.peer == UDP
    assert not d.secure


def test_uas_dialog_requires_contact_and_sip_uri() -> None:
    with pytest.raises(RemoteProtocolError):
        uas_dialog(contact_uri=None)
    with pytest.raises(RemoteProtocolError) as exc:
        uas_dialog(contact_uri="mailto:x@example.org")
    assert exc.value.status == 416


def test_uas_dialog_sips_is_secure() -> None:
    assert uas_dialog(uri="sips:service@10.0.0.1").secure


def test_uac_dialog_from_2xx() -> None:
    d = uac_dialog()
    assert d.id == DialogId("cid@10.0.0.1", "ours", "theirs")
    assert d.route_set == list(reversed(RR))  # §12.1.2: reversed
    assert d.remote_target == "sip:bob@192.0.2.99:5080"
    assert d.local_seq == 3 and d.remote_seq is None
    assert d.local_uri.display == "\"Alice\""


def test_uac_dialog_without_contact_falls_back_to_request_uri() -> None:
    assert uac_dialog(contact=None).remote_target == "sip:bob@192.0.2.10"


def test_create_request_cseq_tags_and_loose_routing() -> None:
    d = uas_dialog()
    bye = d.create_request("BYE")
    info = d.create_request("INFO", body=b"Signal=5\r\n", content_type="application/dtmf-relay")
    assert bye.cseq == (1, "BYE") and info.cseq == (2, "INFO")
    assert bye.from_.tag == "local-tag" and bye.to.tag == "peer-tag"
    assert bye.from_.uri == "sip:service@10.0.0.1" and bye.to.uri == "sip:peer@192.0.2.10"
    assert bye.call_id == "call-1@192.0.2.10"
    # loose routing (§12.2.1.1): Request-URI is the remote target, Route is the route set
    assert bye.uri == "sip:peer@192.0.2.10:5060"
    assert bye.headers.get_all("Route") == list(RR)
    assert bye.headers.get("Max-Forwards") == "70"
    assert info.headers.get("Content-Type") == "application/dtmf-relay" and info.body == b"Signal=5\r\n"
    bye.headers.prepend("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx")
    wire = parse_message(bye.to_bytes())  # what we build is a well-formed request
    assert wire.cseq == (1, "BYE") and wire.to.tag == "peer-tag"


def test_uac_dialog_cseq_continues_from_invite() -> None:
    d = uac_dialog()
    assert d.create_request("BYE").cseq == (4, "BYE")
    ack = d.create_ack(3)
    assert ack.cseq == (3, "ACK") and ack.method == "ACK"
    assert d.local_seq == 4  # an ACK does not use a sequence number
    with pytest.raises(LocalProtocolError):
        d.create_request("ACK")


def test_strict_router_first_in_route_set() -> None:
    rr = ("<sip:strict.example.net;maddr=192.0.2.1>", "<sip:p2.example.net;lr>")
    d = uas_dialog(rr=rr)
    req = d.create_request("BYE")
    # §12.2.1.1: the strict router's URI is the Request-URI; the remote target goes last in Route
    assert req.uri == "sip:strict.example.net;maddr=192.0.2.1"
    assert req.headers.get_all("Route") == ["<sip:p2.example.net;lr>", "<sip:peer@192.0.2.10:5060>"]


def test_no_route_set_no_route_header() -> None:
    d = uas_dialog(rr=())
    req = d.create_request("BYE")
    assert req.headers.get_all("Route") == [] and req.uri == d.remote_target


def test_check_remote_request_cseq_rules() -> None:
    d = uas_dialog()
    d.check_remote_request(request(build_request("BYE", cseq=6, to_tag="local-tag")))
    assert d.remote_seq == 6
    for seq in (6, 2):
        with pytest.raises(RemoteProtocolError) as exc:
            d.check_remote_request(request(build_request("INFO", cseq=seq, to_tag="local-tag")))
        assert exc.value.status == 500
    d.check_remote_request(request(build_request("ACK", cseq=5, cseq_method="ACK", to_tag="local-tag")))
    assert d.remote_seq == 6


def test_uac_dialog_accepts_any_first_remote_cseq() -> None:
    d = uac_dialog()
    d.check_remote_request(request(build_request("BYE", cseq=1, to_tag="ours")))
    assert d.remote_seq == 1


def test_target_refresh_on_reinvite_not_on_info() -> None:
    d = uas_dialog()
    info = build_request("INFO", cseq=6, to_tag="local-tag",
                         extra=(("Contact", "<sip:moved@198.51.100.1>"),))
    d.check_remote_request(request(info))
    assert d.remote_target == "sip:peer@192.0.2.10:5060"
    reinvite = build_request("INVITE", cseq=7, to_tag="local-tag", contact_uri="sip:peer@198.51.100.9:5062")
    d.check_remote_request(request(reinvite))
    assert d.remote_target == "sip:peer@198.51.100.9:5062"
    assert d.create_request("BYE").uri == "sip:peer@198.51.100.9:5062"
    # the route set never changes after dialog creation (§12.2)
    assert d.route_set == list(RR)


def test_update_from_response_refreshes_target_on_2xx_only() -> None:
    d = uac_dialog()
    req = d.create_request("INVITE")
    req.headers.prepend("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKre")
    d.update_from_response(response(build_response(req, 488, contact_uri="sip:no@192.0.2.1")))
    assert d.remote_target == "sip:bob@192.0.2.99:5080"
    d.update_from_response(response(build_response(req, 200, contact_uri="sip:yes@192.0.2.2")))
    assert d.remote_target == "sip:yes@192.0.2.2"


def test_dialog_state_table() -> None:
    d = uas_dialog()
    with pytest.raises(LocalProtocolError):
        d.move("bogus")
    d.move("confirm")
    assert d.state == "confirmed"
    d.move("terminate")
    d.move("terminate")
    with pytest.raises(LocalProtocolError):
        d.move("confirm")
    assert d.state == "terminated"
    for (state, _), new in Dialog.TRANSITIONS.items():
        assert state in {"early", "confirmed", "terminated"} and new in {"confirmed", "terminated"}


def test_new_tag_and_call_id() -> None:
    assert new_tag() != new_tag() and len(new_tag()) >= 8
    cid = new_call_id("10.0.0.1")
    assert cid.endswith("@10.0.0.1") and cid != new_call_id("10.0.0.1")


def test_request_uri_is_a_valid_sip_uri_for_every_route_shape() -> None:
    for rr in ((), RR, ("<sip:strict.example.net>",)):
        req = uas_dialog(rr=rr).create_request("OPTIONS")
        parse_uri(req.uri)
