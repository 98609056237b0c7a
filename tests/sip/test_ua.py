"""End-to-end tests of acd.sip.ua and acd.sip.call against a scripted peer, on virtual time.

The peer's requests are written by hand as bytes, parsed with ``parse_message`` and fed with
``ua.receive``; what the UA sends is re-parsed from its bytes before it is checked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.sip.call import (
    Call,
    CallConnected,
    CallEnded,
    CallInfo,
    CallProgress,
    CallReoffer,
    IncomingCall,
)
from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.events import Peer, TimerConfig
from acd.sip.message import Request, Response, parse_message
from acd.sip.ua import ALLOW, UserAgent
from tests.sip.vt import TCP, UDP, Driver, Sent, build_request, build_response, contact, sent_by

T1, T2 = 0.5, 4.0
OFFER = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n")
HOLD = OFFER.replace(b"a=sendrecv", b"a=sendonly").replace(b"1 1 IN", b"1 2 IN")
ANSWER = (b"v=0\r\no=- 7 7 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
          b"m=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n")
RR = ("<sip:edge.carrier.example;lr>", "<sip:core.carrier.example;lr>")
PEER_CONTACT = "sip:peer@192.0.2.10:5060"


def make_ua(timers: TimerConfig | None = None, **kw: Any) -> tuple[UserAgent, Driver]:
    ua = UserAgent(timers or TimerConfig(t1=T1, t2=T2), sent_by, contact=contact, **kw)
    return ua, Driver(ua)


def wire(sent: list[Sent]) -> list[Any]:
    return [s.wire() for s in sent]


def statuses(sent: list[Sent]) -> list[int | None]:
    return [s.status for s in sent]


def methods(sent: list[Sent]) -> list[str | None]:
    return [s.method for s in sent]


def act(ua: UserAgent, d: Driver, call: Call, action: str, arg: Any = None) -> list[Sent]:
    ua.act(call, action, d.now, arg)
    return d.drain()


def allow(msg: Any) -> str:
    return ", ".join(msg.headers.get_all("Allow"))


def assert_clean(ua: UserAgent, d: Driver) -> None:
    """Nothing left behind once every timer ran out."""
    d.run_out()
    assert ua.layer.client == {} and ua.layer.server == {}
    assert ua.dialogs == {} and ua.calls == {} and ua._handlers == {}
    assert ua.get_timer() is None


# -- inbound ------------------------------------------------------------------------------


def incoming(d: Driver, peer: Peer = UDP, **kw: Any) -> Call:
    kw.setdefault("body", OFFER)
    kw.setdefault("extra", tuple(("Record-Route", r) for r in RR))
    d.receive(build_request("INVITE", transport=peer.transport.upper(), **kw), peer)
    ev = d.of(IncomingCall)[-1]
    return ev.call


def in_dialog(call: Call, method: str, cseq: int, peer: Peer = UDP, **kw: Any) -> bytes:
    assert call.dialog is not None
    kw.setdefault("branch", f"z9hG4bK-{method.lower()}-{cseq}")
    kw.setdefault("to_tag", call.dialog.local_tag)
    return build_request(method, f"{contact('udp')}", transport=peer.transport.upper(), cseq=cseq, **kw)


def ack_for(call: Call, cseq: int = 1, *, body: bytes = b"", branch: str = "z9hG4bK-ack2xx") -> bytes:
    return in_dialog(call, "ACK", cseq, branch=branch, body=body)


def answered_call(ua: UserAgent, d: Driver, peer: Peer = UDP) -> Call:
    call = incoming(d, peer)
    act(ua, d, call, "ring")
    act(ua, d, call, "answer", ANSWER)
    d.drain()
    d.receive(ack_for(call), peer)
    assert call.state == "confirmed"
    d.take_sent()
    d.take_events()
    return call


def test_incoming_invite_event_and_100() -> None:
    ua, d = make_ua()
    call = incoming(d)
    (ev,) = d.events
    assert isinstance(ev, IncomingCall) and ev.source == UDP
    assert ev.request.method == "INVITE" and call.remote_sdp == OFFER
    assert call.state == "incoming" and call.direction == "in" and call.trunk is None
    assert statuses(d.sent) == [100]


def test_ring_answer_ack_connects() -> None:
    ua, d = make_ua()
    call = incoming(d)
    (ringing,) = wire(act(ua, d, call, "ring"))
    assert ringing.status == 180
    assert ringing.to.tag == call.invite_tx.to_tag
    assert ringing.headers.get_all("Record-Route") == list(RR)
    assert ringing.contacts[0].uri == contact("udp")
    assert call.state == "early" and call.dialog is not None
    d.advance(1.0)
    act(ua, d, call, "answer", ANSWER)
    d.drain()
    d.advance(9.9)
    oks = [s for s in d.sent if s.status == 200]
    # §13.3.1.4: 2xx at T1, 2T1, 4T1... capped at T2 until the ACK
    assert [s.at for s in oks] == pytest.approx([1.0, 1.5, 2.5, 4.5, 8.5])
    ok = oks[0].wire()
    assert ok.body == ANSWER and ok.headers.get("Content-Type") == "application/sdp"
    assert ok.to.tag == ringing.to.tag and ok.contacts[0].uri == contact("udp")
    assert ok.headers.get_all("Record-Route") == list(RR)
    assert allow(ok) == ALLOW
    assert all(s.message is oks[0].message for s in oks)
    d.receive(ack_for(call), UDP)
    assert call.state == "confirmed" and call.dialog.state == "confirmed"
    assert [type(e) for e in d.events] == [IncomingCall, CallConnected]
    n = len(d.sent)
    d.advance(60.0)
    assert len(d.sent) == n  # no more 2xx after the ACK
    d.receive(ack_for(call), UDP)  # a duplicate ACK is harmless
    assert call.state == "confirmed"


def test_answer_over_tcp_does_not_retransmit_2xx() -> None:
    ua, d = make_ua()
    call = incoming(d, TCP)
    act(ua, d, call, "answer", ANSWER)
    d.advance(10.0)
    assert statuses(d.sent) == [100, 200]
    assert all(s.dest == TCP for s in d.sent)
    d.receive(ack_for(call).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"), TCP)
    assert d.of(CallConnected)


def test_no_ack_sends_bye_after_64_t1() -> None:
    ua, d = make_ua()
    call = incoming(d)
    act(ua, d, call, "answer", ANSWER)
    d.advance(40.0)
    oks = [s.at for s in d.sent if s.status == 200]
    expected, t, step = [0.0], 0.0, T1
    while t + step < 64 * T1:
        t += step
        expected.append(t)
        step = min(2 * step, T2)
    assert oks == pytest.approx(expected)
    bye = [s for s in d.sent if s.method == "BYE"][0]
    assert bye.at == pytest.approx(64 * T1)
    req = bye.wire()
    assert req.to.tag == "peer-tag" and req.from_.tag == call.invite_tx.to_tag
    assert req.uri == PEER_CONTACT and req.headers.get_all("Route") == list(RR)
    d.receive(build_response(req, 200), UDP)
    (ended,) = d.of(CallEnded)
    assert ended.cause == "no-ack"
    assert_clean(ua, d)


def test_remote_bye_ends_call() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    sent = d.receive(in_dialog(call, "BYE", 2), UDP)
    (ok,) = wire(sent)
    assert ok.status == 200 and ok.cseq == (2, "BYE") and ok.to.tag == call.dialog.local_tag
    (ended,) = d.of(CallEnded)
    assert ended.cause == "remote-bye" and call.ended
    d.receive(in_dialog(call, "BYE", 2), UDP)  # retransmission: the same 200 again
    assert statuses(d.sent) == [200, 200]
    assert len(d.of(CallEnded)) == 1
    assert_clean(ua, d)


def test_local_hangup_bye_cseq_rises() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    (reinvite,) = wire(act(ua, d, call, "reoffer_send", ANSWER))
    assert reinvite.method == "INVITE" and reinvite.cseq == (1, "INVITE")
    assert reinvite.to.tag == "peer-tag" and reinvite.body == ANSWER
    (ack,) = wire(d.receive(build_response(reinvite, 200, contact_uri=PEER_CONTACT, body=OFFER), UDP))
    assert ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert call.remote_sdp == OFFER
    act(ua, d, call, "hangup")
    (bye,) = [s.wire() for s in d.sent if s.method == "BYE"]
    assert bye.cseq == (2, "BYE")
    assert call.state == "ending"
    act(ua, d, call, "hangup")  # twice is harmless
    d.receive(build_response(bye, 200), UDP)
    (ended,) = d.of(CallEnded)
    assert ended.cause == "local-bye" and call.ended
    assert_clean(ua, d)


def test_local_bye_timeout_still_ends_call() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    act(ua, d, call, "hangup")
    d.run_out()
    (ended,) = d.of(CallEnded)
    assert ended.cause == "local-bye"
    assert len([s for s in d.sent if s.method == "BYE"]) == 11  # Timer E until Timer F
    assert_clean(ua, d)


def test_reinvite_hold_reoffer_answer() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    d.receive(in_dialog(call, "INVITE", 2, body=HOLD), UDP)
    assert statuses(d.sent) == [100]
    (ev,) = d.of(CallReoffer)
    assert ev.call is call and b"a=sendonly" in ev.offer
    held = ANSWER.replace(b"a=sendrecv", b"a=recvonly")
    (ok,) = wire(act(ua, d, call, "reoffer_answer", held))
    assert ok.status == 200 and ok.cseq == (2, "INVITE") and ok.body == held
    assert ok.to.tag == call.dialog.local_tag and ok.contacts
    assert call.remote_sdp == HOLD and call.local_sdp == held
    d.receive(ack_for(call, 2, branch="z9hG4bK-ack-re"), UDP)
    assert call.state == "confirmed"
    with pytest.raises(LocalProtocolError):
        act(ua, d, call, "reoffer_answer", held)  # nothing pending


def test_reinvite_2xx_retransmitted_until_ack() -> None:
    """§13.3.1.4 applies to every INVITE: a lost 2xx to a re-INVITE must be re-sent."""
    ua, d = make_ua()
    call = answered_call(ua, d)
    d.receive(in_dialog(call, "INVITE", 2, body=HOLD), UDP)
    act(ua, d, call, "reoffer_answer", ANSWER)
    start = d.now
    d.advance(start + 4.0)
    assert [s.at - start for s in d.sent if s.status == 200] == pytest.approx([0.0, 0.5, 1.5, 3.5])
    d.receive(ack_for(call, 2, branch="z9hG4bK-ack-re"), UDP)
    n = len(d.sent)
    d.advance(start + 40.0)
    assert len(d.sent) == n and call.state == "confirmed"


def test_reinvite_2xx_retransmission_stops_after_64_t1() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    d.receive(in_dialog(call, "INVITE", 2, body=HOLD), UDP)
    start = d.now
    act(ua, d, call, "reoffer_answer", ANSWER)
    d.run_out()
    oks = [s.at - start for s in d.sent if s.status == 200]
    # T1, 2T1, 4T1 capped at T2, until the server transaction's Timer L (64*T1)
    assert oks == pytest.approx([0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    assert "reinvite_2xx" not in call.app and call.state == "confirmed"


def test_second_reinvite_while_theirs_is_pending_gets_500_with_retry_after() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    d.receive(in_dialog(call, "INVITE", 2, body=HOLD), UDP)
    sent = d.receive(in_dialog(call, "INVITE", 3, body=OFFER), UDP)
    assert statuses(sent) == [500]  # §14.2
    assert 0 <= int(sent[0].wire().headers.get("Retry-After")) <= 10
    assert len(d.of(CallReoffer)) == 1
    act(ua, d, call, "reoffer_reject", 488)
    assert d.sent[-1].status == 488 and d.sent[-1].wire().cseq == (2, "INVITE")


def test_in_dialog_request_with_unknown_tags_gets_481() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    sent = d.receive(in_dialog(call, "BYE", 2, to_tag="nope"), UDP)
    assert statuses(sent) == [481]
    sent = d.receive(in_dialog(call, "INFO", 3, from_tag="other"), UDP)
    assert statuses(sent) == [481]
    sent = d.receive(build_request("BYE", branch="z9hG4bK-oob"), UDP)  # no To tag at all
    assert statuses(sent) == [481]
    assert call.state == "confirmed"


def test_bye_with_lower_cseq_gets_500() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    d.receive(in_dialog(call, "INFO", 5, extra=(("Content-Type", "application/dtmf-relay"),)), UDP)
    sent = d.receive(in_dialog(call, "BYE", 4), UDP)
    assert statuses(sent) == [500]
    assert call.state == "confirmed"
    assert d.of(CallInfo)


def test_in_dialog_options_unknown_and_unsupported() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    assert statuses(d.receive(in_dialog(call, "OPTIONS", 2), UDP)) == [200]
    assert statuses(d.receive(in_dialog(call, "FOO", 3), UDP)) == [501]
    (r,) = wire(d.receive(in_dialog(call, "UPDATE", 4), UDP))
    assert r.status == 405 and allow(r) == ALLOW


def test_options_out_of_dialog_gets_200_with_allow() -> None:
    ua, d = make_ua()
    (r,) = wire(d.receive(build_request("OPTIONS"), UDP))
    assert r.status == 200 and allow(r) == ALLOW
    assert r.to.tag and r.headers.get("Accept") == "application/sdp"
    assert d.events == []
    assert_clean(ua, d)


def test_unknown_method_gets_501() -> None:
    ua, d = make_ua()
    (r,) = wire(d.receive(build_request("FOO"), UDP))
    assert r.status == 501 and r.cseq == (1, "FOO")
    assert_clean(ua, d)


@pytest.mark.parametrize("method", ["SUBSCRIBE", "REGISTER", "MESSAGE"])
def test_known_unsupported_method_gets_405_with_allow(method: str) -> None:
    ua, d = make_ua()
    (r,) = wire(d.receive(build_request(method), UDP))
    assert r.status == 405 and allow(r) == ALLOW


def test_require_100rel_gets_420_with_unsupported() -> None:
    ua, d = make_ua()
    sent = d.receive(build_request("INVITE", body=OFFER, extra=(("Require", "100rel, timer"),)), UDP)
    (r,) = wire(sent)
    assert r.status == 420
    assert r.headers.get_all("Unsupported") == ["100rel", "timer"]
    assert d.events == []
    d.receive(build_request("ACK", to_tag=r.to.tag, cseq_method="ACK"), UDP)
    assert_clean(ua, d)


@pytest.mark.parametrize("ring", [False, True])
def test_cancel_before_answer(ring: bool) -> None:
    ua, d = make_ua()
    call = incoming(d)
    if ring:
        act(ua, d, call, "ring")
    d.advance(2.0)
    sent = d.receive(build_request("CANCEL"), UDP)
    assert sorted(statuses(sent)) == [200, 487]
    (ended,) = d.of(CallEnded)
    assert ended.cause == "cancelled" and ended.status == 487 and call.ended
    with pytest.raises(LocalProtocolError):
        act(ua, d, call, "answer", ANSWER)  # too late
    to_tag = [s for s in sent if s.status == 487][0].wire().to.tag
    d.receive(build_request("ACK", to_tag=to_tag, cseq_method="ACK"), UDP)
    assert_clean(ua, d)


def test_cancel_after_answer_does_not_end_call() -> None:
    ua, d = make_ua()
    call = incoming(d)
    act(ua, d, call, "answer", ANSWER)
    sent = d.receive(build_request("CANCEL"), UDP)
    assert statuses(sent) == [200]
    assert call.state == "answered" and not d.of(CallEnded)


def test_not_accepting_gets_503_retry_after() -> None:
    ua, d = make_ua()
    ua.accepting = False
    (r,) = wire(d.receive(build_request("INVITE", body=OFFER), UDP))
    assert r.status == 503 and r.headers.get("Retry-After")
    assert not d.of(IncomingCall)
    assert statuses(d.receive(build_request("OPTIONS", branch="z9hG4bK-o"), UDP)) == [200]


def test_admission_refusal_403() -> None:
    seen: list[tuple[Request, Peer, float]] = []

    def admission(req: Request, source: Peer, now: float) -> Any:
        seen.append((req, source, now))
        return (403, "Forbidden (unknown source)", (("Warning", '399 homeline "who are you"'),))

    ua, d = make_ua(admission=admission)
    (r,) = wire(d.receive(build_request("INVITE", body=OFFER), UDP))
    assert r.status == 403 and r.reason == "Forbidden (unknown source)"
    assert r.headers.get("Warning") and r.to.tag
    assert seen[0][1] == UDP and not d.of(IncomingCall)
    assert ua.stats["admission_403"] == 1


def test_admission_drop_sends_nothing_and_keeps_nothing() -> None:
    ua, d = make_ua(admission=lambda req, src, now: (0, None, ()))
    for i in range(3):
        d.receive(build_request("INVITE", body=OFFER), UDP)  # a scanner's retransmissions
        d.receive(build_request("OPTIONS", branch=f"z9hG4bK-o{i}", call_id=f"o{i}"), UDP)
    assert d.sent == [] and d.events == []
    assert ua.layer.server == {} and ua.calls == {}
    assert ua.stats["admission_0"] == 6


def test_admission_trunk_name_sets_call_trunk() -> None:
    ua, d = make_ua(admission=lambda req, src, now: "carrier-a")
    call = incoming(d)
    assert call.trunk == "carrier-a"


def test_reject_with_status_reason_headers() -> None:
    ua, d = make_ua()
    call = incoming(d)
    (r,) = wire(act(ua, d, call, "reject", (486, "Busy Here", (("Retry-After", "60"),))))
    assert r.status == 486 and r.headers.get("Retry-After") == "60" and r.to.tag
    (ended,) = d.of(CallEnded)
    assert ended.cause == "rejected" and ended.status == 486
    d.receive(build_request("ACK", to_tag=r.to.tag, cseq_method="ACK"), UDP)
    assert_clean(ua, d)


def test_invite_without_contact_gets_400() -> None:
    ua, d = make_ua()
    (r,) = wire(d.receive(build_request("INVITE", contact_uri=None, body=OFFER), UDP))
    assert r.status == 400 and not d.of(IncomingCall)


def test_bye_on_early_dialog_ends_call_and_terminates_invite() -> None:
    """§15: the caller may BYE an early dialog; the UAS answers 487 to the INVITE (§15.1.2)."""
    ua, d = make_ua()
    call = incoming(d)
    act(ua, d, call, "ring")
    d.drain()
    sent = d.receive(in_dialog(call, "BYE", 2), UDP)
    assert sorted(statuses(sent)) == [200, 487]
    (ended,) = d.of(CallEnded)
    assert ended.cause == "remote-bye"
    to_tag = call.dialog.local_tag
    d.receive(build_request("ACK", to_tag=to_tag, cseq_method="ACK"), UDP)
    assert_clean(ua, d)


def test_hangup_before_ack_waits_for_ack() -> None:
    """§15: the callee must not send BYE before the ACK for its 2xx (or the 2xx times out)."""
    ua, d = make_ua()
    call = incoming(d)
    act(ua, d, call, "answer", ANSWER)
    d.advance(0.2)
    act(ua, d, call, "hangup")
    d.advance(1.0)
    assert "BYE" not in methods(d.sent)
    assert statuses(d.sent).count(200) == 2  # the 2xx is still retransmitted
    d.receive(ack_for(call), UDP)
    (bye,) = [s.wire() for s in d.sent if s.method == "BYE"]
    d.receive(build_response(bye, 200), UDP)
    (ended,) = d.of(CallEnded)
    assert ended.cause == "local-bye"
    assert not d.of(CallConnected)
    assert_clean(ua, d)


def test_ack_with_sdp_sets_remote_sdp() -> None:
    ua, d = make_ua()
    call = incoming(d, body=b"")
    act(ua, d, call, "answer", ANSWER)  # an offer in the 2xx, the answer in the ACK
    d.receive(ack_for(call, body=OFFER), UDP)
    assert call.remote_sdp == OFFER


def test_in_dialog_info_event() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    raw = in_dialog(call, "INFO", 2, extra=(("Content-Type", "application/dtmf-relay"),))
    raw = raw.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 10\r\n\r\nSignal=5\r\n")
    assert statuses(d.receive(raw, UDP)) == [200]
    (ev,) = d.of(CallInfo)
    assert ev.content_type == "application/dtmf-relay" and ev.body == b"Signal=5\r\n"


def test_stray_ack_counted() -> None:
    ua, d = make_ua()
    d.receive(build_request("ACK", to_tag="nobody", cseq_method="ACK"), UDP)
    assert ua.stats["stray_ack"] == 1 and d.sent == []


def test_call_table_handlers_exist() -> None:
    for (state, event), handler in Call.TABLE.items():
        assert callable(getattr(Call, handler, None)), (state, event, handler)


def test_call_unlisted_inputs_raise_the_right_error() -> None:
    ua, d = make_ua()
    call = incoming(d)
    call.state = "ended"
    with pytest.raises(RemoteProtocolError):
        call.handle("bye", 0.0)
    with pytest.raises(LocalProtocolError):
        call.handle("answer", 0.0, ANSWER)


# -- outbound -------------------------------------------------------------------------------


def place(ua: UserAgent, d: Driver, **kw: Any) -> tuple[Call, Request]:
    call = ua.invite("sip:+15551230000@192.0.2.10", UDP, d.now, from_uri="sip:acd@10.0.0.1",
                     sdp=OFFER, **kw)
    invites = [s for s in d.drain() if s.method == "INVITE"]
    return call, invites[-1].wire()


def test_outbound_invite_is_well_formed() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d, trunk="carrier-a", headers=(("P-Asserted-Identity", "<sip:+15550001111@x>"),))
    assert inv.uri == "sip:+15551230000@192.0.2.10"
    assert inv.cseq == (1, "INVITE") and inv.from_.tag and inv.to.tag is None
    assert inv.call_id == call.call_id and inv.body == OFFER
    assert inv.contacts[0].uri == contact("udp")
    assert inv.headers.get("P-Asserted-Identity") and inv.headers.get("Max-Forwards") == "70"
    assert call.state == "calling" and call.trunk == "carrier-a"
    assert d.sent[0].dest == UDP


def test_outbound_progress_connect_and_reack() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.receive(build_response(inv, 100), UDP)
    d.receive(build_response(inv, 180, to_tag="callee"), UDP)
    assert [e.status for e in d.of(CallProgress)] == [100, 180]
    ok = build_response(inv, 200, to_tag="callee", contact_uri="sip:callee@192.0.2.77:5070",
                        body=ANSWER, record_route=RR)
    sent = d.receive(ok, UDP)
    (ack,) = wire(sent)
    assert ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert ack.top_via.branch != inv.top_via.branch  # a new transaction (§13.2.2.4)
    assert ack.uri == "sip:callee@192.0.2.77:5070"
    assert ack.headers.get_all("Route") == list(reversed(RR))
    assert ack.to.tag == "callee" and ack.from_.tag == inv.from_.tag
    assert d.of(CallConnected) and call.state == "confirmed" and call.remote_sdp == ANSWER
    again = d.receive(ok, UDP)  # retransmitted 2xx: ACK again
    assert methods(again) == ["ACK"] and again[0].wire().cseq == (1, "ACK")
    assert len(d.of(CallConnected)) == 1
    act(ua, d, call, "hangup")
    (bye,) = [s.wire() for s in d.sent if s.method == "BYE"]
    assert bye.cseq == (2, "BYE") and bye.uri == "sip:callee@192.0.2.77:5070"
    d.receive(build_response(bye, 200), UDP)
    assert d.of(CallEnded)[0].cause == "local-bye"
    assert_clean(ua, d)


def test_outbound_rejected() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    sent = d.receive(build_response(inv, 486, "Busy Here", to_tag="callee"), UDP)
    assert methods(sent) == ["ACK"]
    assert sent[0].wire().top_via.branch == inv.top_via.branch  # non-2xx ACK: same transaction
    (ended,) = d.of(CallEnded)
    assert ended.cause == "rejected" and ended.status == 486
    assert_clean(ua, d)


def test_outbound_timeout() -> None:
    ua, d = make_ua()
    call, _ = place(ua, d)
    d.run_out()
    (ended,) = d.of(CallEnded)
    assert ended.cause == "timeout" and d.now == 32.0
    assert_clean(ua, d)


def test_hangup_before_1xx_cancels_after_1xx() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.advance(0.2)
    act(ua, d, call, "hangup")
    d.advance(1.0)
    assert "CANCEL" not in methods(d.sent)
    d.receive(build_response(inv, 180, to_tag="callee"), UDP)
    (cancel,) = [s.wire() for s in d.sent if s.method == "CANCEL"]
    assert cancel.cseq == (1, "CANCEL") and cancel.top_via.branch == inv.top_via.branch
    d.receive(build_response(cancel, 200, to_tag="callee"), UDP)
    sent = d.receive(build_response(inv, 487, to_tag="callee"), UDP)
    assert methods(sent) == ["ACK"]
    (ended,) = d.of(CallEnded)
    assert ended.cause == "cancelled" and ended.status == 487
    assert_clean(ua, d)


def test_200_crossing_cancel_gets_ack_and_bye() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.receive(build_response(inv, 183, to_tag="callee"), UDP)
    act(ua, d, call, "hangup")
    (cancel,) = [s.wire() for s in d.sent if s.method == "CANCEL"]
    sent = d.receive(build_response(inv, 200, to_tag="callee", contact_uri="sip:callee@192.0.2.77"), UDP)
    assert methods(sent) == ["ACK", "BYE"]
    assert not d.of(CallConnected)  # the app hung up: it never hears of a connection
    d.receive(build_response(cancel, 200, to_tag="callee"), UDP)
    bye = sent[1].wire()
    d.receive(build_response(bye, 200), UDP)
    (ended,) = d.of(CallEnded)
    assert ended.cause == "cancelled"
    assert_clean(ua, d)


def test_cancelled_call_without_final_response_ends() -> None:
    """§9.1: the peer never answers the CANCELled INVITE — give up after 64*T1."""
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.receive(build_response(inv, 180, to_tag="callee"), UDP)
    act(ua, d, call, "hangup")
    (cancel,) = [s.wire() for s in d.sent if s.method == "CANCEL"]
    d.receive(build_response(cancel, 200, to_tag="callee"), UDP)
    d.run_out()
    assert call.ended
    assert_clean(ua, d)


def test_407_with_authorize_resends_invite() -> None:
    seen: list[Response] = []

    def authorize(call: Call, resp: Response) -> list[tuple[str, str]]:
        seen.append(resp)
        return [("Proxy-Authorization", 'Digest username="acd", realm="carrier", response="x"')]

    ua, d = make_ua(authorize=authorize)
    call, inv = place(ua, d)
    challenge = (("Proxy-Authenticate", 'Digest realm="carrier", nonce="n1"'),)
    sent = d.receive(build_response(inv, 407, to_tag="proxy", extra=challenge), UDP)
    assert methods(sent) == ["ACK", "INVITE"]
    assert seen and seen[0].status == 407
    inv2 = sent[1].wire()
    assert inv2.cseq == (2, "INVITE")
    assert inv2.headers.get("Proxy-Authorization", "").startswith("Digest")
    assert inv2.call_id == inv.call_id and inv2.from_.tag == inv.from_.tag
    assert inv2.to.tag is None and inv2.body == OFFER
    assert inv2.top_via.branch != inv.top_via.branch
    assert len(inv2.headers.get_all("Via")) == 1 and len(inv2.headers.get_all("CSeq")) == 1
    assert not d.of(CallEnded)
    ok = d.receive(build_response(inv2, 200, to_tag="callee", contact_uri="sip:callee@192.0.2.77"), UDP)
    assert ok[0].wire().cseq == (2, "ACK")
    act(ua, d, call, "hangup")
    (bye,) = [s.wire() for s in d.sent if s.method == "BYE"]
    assert bye.cseq == (3, "BYE")
    d.receive(build_response(bye, 200), UDP)
    assert_clean(ua, d)


def test_407_without_authorize_is_rejected() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.receive(build_response(inv, 407, to_tag="proxy"), UDP)
    (ended,) = d.of(CallEnded)
    assert ended.cause == "rejected" and ended.status == 407


def test_outbound_retransmitted_2xx_to_reinvite_is_acked_again() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.receive(build_response(inv, 200, to_tag="callee", contact_uri="sip:callee@192.0.2.77"), UDP)
    d.take_sent()
    act(ua, d, call, "reoffer_send", HOLD)
    (reinvite,) = wire(d.take_sent())
    assert reinvite.cseq == (2, "INVITE")
    ok = build_response(reinvite, 200, to_tag="callee", body=ANSWER)
    assert methods(d.receive(ok, UDP)) == ["ACK"]
    assert methods(d.receive(ok, UDP)) == ["ACK"]  # our ACK was lost: the peer re-sends its 2xx
    assert [s.wire().cseq for s in d.sent] == [(2, "ACK"), (2, "ACK")]


@pytest.mark.parametrize("status", [408, 481])
def test_408_or_481_to_our_reinvite_ends_the_call(status: int) -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.receive(build_response(inv, 200, to_tag="callee", contact_uri="sip:callee@192.0.2.77"), UDP)
    d.take_sent()
    act(ua, d, call, "reoffer_send", HOLD)
    (reinvite,) = wire(d.take_sent())
    sent = d.receive(build_response(reinvite, status, to_tag="callee"), UDP)
    assert "BYE" in methods(sent)  # §12.2.1.2: the dialog is over
    (bye,) = [s.wire() for s in sent if s.method == "BYE"]
    d.receive(build_response(bye, 200), UDP)
    assert d.of(CallEnded)


def test_response_with_foreign_sent_by_is_discarded() -> None:
    ua, d = make_ua()
    call, inv = place(ua, d)
    resp = parse_message(build_response(inv, 486, to_tag="callee"))
    top = resp.top_via
    resp.headers.set("Via", str(replace(top, host="198.51.100.99")))  # not our sent-by (§18.1.2)
    d.receive(resp.to_bytes(), UDP)
    assert not d.of(CallEnded) and ua.stats["foreign_via_response"] == 1


def test_transport_error_fails_incoming_call() -> None:
    ua, d = make_ua()
    call = incoming(d, TCP)
    ua.transport_error(TCP, d.now)
    d.drain()
    (ended,) = d.of(CallEnded)
    assert ended.cause == "timeout" and call.ended


# -- randomized ----------------------------------------------------------------------------------

_STEPS = st.lists(st.one_of(
    st.tuples(st.just("peer"), st.sampled_from(
        ["invite", "invite", "ack", "bye", "cancel", "reinvite", "info", "options", "foo", "bye_low"])),
    st.tuples(st.just("app"), st.sampled_from(
        ["ring", "answer", "reject", "hangup", "reoffer_answer", "reoffer_reject", "reoffer_send"])),
    st.tuples(st.just("wait"), st.sampled_from([0.1, 0.5, 2.0, 5.0, 40.0])),
), max_size=25)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_STEPS, st.booleans())
def test_random_inbound_call_scripts_never_break_the_ua(steps: list[tuple[str, Any]], tcp: bool) -> None:
    peer = TCP if tcp else UDP
    t = peer.transport.upper()
    ua, d = make_ua()
    seq = 1
    for kind, what in steps:
        call = d.of(IncomingCall)[-1].call if d.of(IncomingCall) else None
        tag = call.dialog.local_tag if call is not None and call.dialog is not None else "none"
        if kind == "peer":
            seq += 1
            raw = {
                "invite": lambda: build_request("INVITE", transport=t, body=OFFER),
                "ack": lambda: build_request("ACK", transport=t, branch=f"z9hG4bK-a{seq}", to_tag=tag,
                                             cseq_method="ACK"),
                "bye": lambda: build_request("BYE", transport=t, branch=f"z9hG4bK-b{seq}", to_tag=tag,
                                             cseq=seq),
                "bye_low": lambda: build_request("BYE", transport=t, branch=f"z9hG4bK-l{seq}", to_tag=tag),
                "cancel": lambda: build_request("CANCEL", transport=t),
                "reinvite": lambda: build_request("INVITE", transport=t, branch=f"z9hG4bK-r{seq}", to_tag=tag,
                                                  cseq=seq, body=HOLD),
                "info": lambda: build_request("INFO", transport=t, branch=f"z9hG4bK-i{seq}", to_tag=tag,
                                              cseq=seq),
                "options": lambda: build_request("OPTIONS", transport=t, branch=f"z9hG4bK-o{seq}", cseq=seq),
                "foo": lambda: build_request("FOO", transport=t, branch=f"z9hG4bK-f{seq}", cseq=seq),
            }[what]()
            d.receive(raw, peer)
        elif kind == "app" and call is not None:
            arg = {"answer": ANSWER, "reoffer_answer": ANSWER, "reoffer_send": HOLD}.get(what)
            try:
                ua.act(call, what, d.now, arg)
            except LocalProtocolError:
                pass  # the application asked for something the state forbids: reported to it
            d.drain()
        elif kind == "wait":
            d.advance(d.now + what)
        timer = ua.get_timer()
        assert timer is None or timer >= d.now
    # whatever happened, the call can be wound down and nothing is left behind
    for ev in d.of(IncomingCall):
        c = ev.call
        if not c.ended:
            try:
                ua.act(c, "hangup", d.now)
            except LocalProtocolError:
                pass
    d.run_out()
    for s in [s for s in d.sent if s.method == "BYE"]:
        d.receive(build_response(s.wire(), 200), peer)
    d.run_out()
    assert ua.layer.client == {} and ua.layer.server == {}
    assert ua.calls == {} and ua.dialogs == {} and ua._handlers == {}


_OUT_STEPS = st.lists(st.one_of(
    st.tuples(st.just("inv"), st.sampled_from([100, 180, 183, 200, 200, 486, 487, 407, 503])),
    st.tuples(st.just("last"), st.sampled_from([100, 200, 200, 481, 491, 500])),
    st.tuples(st.just("app"), st.sampled_from(["hangup", "reoffer_send", "answer", "reoffer_answer"])),
    st.tuples(st.just("peer"), st.sampled_from(["bye", "reinvite", "info", "ack"])),
    st.tuples(st.just("wait"), st.sampled_from([0.1, 0.5, 2.0, 5.0, 40.0])),
), max_size=20)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OUT_STEPS, st.booleans())
def test_random_outbound_call_scripts_never_break_the_ua(steps: list[tuple[str, Any]], tcp: bool) -> None:
    peer = TCP if tcp else UDP
    ua, d = make_ua(authorize=lambda call, resp: [("Authorization", 'Digest username="acd"')])
    call = ua.invite("sip:bob@192.0.2.10", peer, d.now, from_uri="sip:acd@10.0.0.1", sdp=OFFER)
    d.drain()
    seq = 10
    for kind, what in steps:
        if kind == "inv":
            assert call.invite is not None
            d.receive(build_response(call.invite, what, to_tag="callee" if what > 100 else None,
                                     contact_uri="sip:callee@192.0.2.10"), peer)
        elif kind == "last":
            ours = [s.wire() for s in d.sent if s.method in ("BYE", "INVITE") and s.wire().to.tag]
            if ours:
                d.receive(build_response(ours[-1], what), peer)
        elif kind == "app":
            arg = {"answer": ANSWER, "reoffer_answer": ANSWER, "reoffer_send": HOLD}.get(what)
            try:
                ua.act(call, what, d.now, arg)
            except LocalProtocolError:
                pass
            d.drain()
        elif kind == "peer" and call.dialog is not None:
            seq += 1
            d.receive(build_request(what.upper(), contact(peer.transport), transport=peer.transport.upper(),
                                    branch=f"z9hG4bK-p{seq}", from_tag="callee",
                                    to_tag=call.dialog.local_tag, call_id=call.call_id, cseq=seq,
                                    cseq_method="INVITE" if what == "ack" else None,
                                    body=HOLD if what == "reinvite" else b""), peer)
        elif kind == "wait":
            d.advance(d.now + what)
        timer = ua.get_timer()
        assert timer is None or timer >= d.now
    if not call.ended:
        try:
            ua.act(call, "hangup", d.now)
        except LocalProtocolError:
            pass
    d.drain()
    d.run_out()
    for s in [s for s in d.sent if s.method == "BYE"]:
        d.receive(build_response(s.wire(), 200), peer)
    d.run_out()
    assert call.ended
    assert ua.layer.client == {} and ua.layer.server == {}
    assert ua.calls == {} and ua.dialogs == {} and ua._handlers == {}


def test_forked_2xx_is_acked_and_byed() -> None:
    """§13.2.2.4: a 2xx from a second fork gets an ACK and a BYE; the call keeps the first."""
    ua, d = make_ua()
    call, inv = place(ua, d)
    d.receive(build_response(inv, 200, to_tag="fork-a", contact_uri="sip:a@192.0.2.21"), UDP)
    d.take_sent()
    fork_ok = build_response(inv, 200, to_tag="fork-b", contact_uri="sip:b@192.0.2.22")
    sent = wire(d.receive(fork_ok, UDP))
    assert [m.method for m in sent] == ["ACK", "BYE"]
    assert all(m.to.tag == "fork-b" and m.uri == "sip:b@192.0.2.22" for m in sent)
    assert sent[0].cseq == (1, "ACK") and sent[1].cseq == (2, "BYE")
    again = wire(d.receive(fork_ok, UDP))  # retransmitted: ACK again, no second BYE
    assert [m.method for m in again] == ["ACK"]
    d.receive(build_response(sent[1], 200), UDP)
    assert call.state == "confirmed" and call.dialog.remote_tag == "fork-a"
    assert [e for e in d.of(CallConnected)] and not d.of(CallEnded)


def test_glare_our_reinvite_pending_gets_491_and_no_second_reoffer() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    (ours,) = wire(act(ua, d, call, "reoffer_send", HOLD))
    with pytest.raises(LocalProtocolError):
        act(ua, d, call, "reoffer_send", HOLD)  # §14.1: one INVITE at a time
    sent = d.receive(in_dialog(call, "INVITE", 2, body=OFFER), UDP)
    assert 491 in statuses(sent) and not d.of(CallReoffer)  # §14.2 glare
    d.receive(build_response(ours, 200, body=ANSWER), UDP)
    assert call.remote_sdp == ANSWER


@pytest.mark.parametrize("who", ["remote", "local"])
def test_pending_reinvite_answered_487_when_call_ends(who: str) -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    d.receive(in_dialog(call, "INVITE", 2, body=HOLD), UDP)
    assert d.of(CallReoffer)
    if who == "remote":
        sent = d.receive(in_dialog(call, "BYE", 3), UDP)
        assert sorted(statuses(sent)) == [200, 487]
    else:
        sent = act(ua, d, call, "hangup")
        assert statuses(sent) == [487, None] and methods(sent) == [None, "BYE"]
        d.receive(build_response(sent[1].wire(), 200), UDP)
    r487 = [s.wire() for s in sent if s.status == 487][0]
    assert r487.cseq == (2, "INVITE") and r487.to.tag == call.dialog.local_tag
    d.receive(in_dialog(call, "ACK", 2, branch="z9hG4bK-invite-2", cseq_method="ACK"), UDP)
    assert_clean(ua, d)


def test_hangup_with_our_reinvite_pending_cancels_it() -> None:
    ua, d = make_ua()
    call = answered_call(ua, d)
    (ours,) = wire(act(ua, d, call, "reoffer_send", HOLD))
    d.receive(build_response(ours, 100), UDP)
    sent = wire(act(ua, d, call, "hangup"))
    assert [m.method for m in sent] == ["CANCEL", "BYE"]
    assert sent[0].cseq == (1, "CANCEL") and sent[0].top_via.branch == ours.top_via.branch
    d.receive(build_response(sent[1], 200), UDP)
    assert d.of(CallEnded)[0].cause == "local-bye"
    assert_clean(ua, d)  # the peer never answered the re-INVITE: given up after 64*T1
