"""Tests for acd.sip.transaction and acd.sip.layer on virtual time (RFC 3261 §17, §18, RFC 6026)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.events import (
    InviteCancelled,
    Peer,
    RequestReceived,
    ResponseReceived,
    TimerConfig,
    TransactionTimeout,
    TransportFailed,
)
from acd.sip.layer import MAGIC_COOKIE, TransactionLayer, response_destination
from acd.sip.message import Request, Response, parse_message
from acd.sip.transaction import (
    REMOTE_INPUTS,
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
    Transaction,
    response_class,
)
from tests.sip.vt import TCP, UDP, Driver, build_request, build_response, sent_by

DEFAULT = TimerConfig()
PEERS = pytest.mark.parametrize("peer", [UDP, TCP], ids=["udp", "tcp"])


def make_layer(timers: TimerConfig = DEFAULT) -> tuple[TransactionLayer, Driver]:
    layer = TransactionLayer(timers, sent_by)
    return layer, Driver(layer)


def our_request(method: str = "INVITE", *, cseq: int = 1, routes: tuple[str, ...] = ()) -> Request:
    req = Request(method=method, uri="sip:bob@192.0.2.10")
    h = req.headers
    for r in routes:
        h.add("Route", r)
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:alice@10.0.0.1>;tag=ours")
    h.add("To", "<sip:bob@192.0.2.10>")
    h.add("Call-ID", "cid-ours@10.0.0.1")
    h.add("CSeq", f"{cseq} {method}")
    return req


def reply(d: Driver, req: Request, status: int, peer: Peer, **kw: object) -> list:
    return d.receive(build_response(req, status, **kw), peer)  # type: ignore[arg-type]


def geometric(start: float, first: float, limit: float, cap: float | None = None) -> list[float]:
    """Retransmission times: first interval ``first`` doubling (capped at ``cap``) before ``limit``."""
    out, t, step = [], start, first
    while t + step < limit:
        t += step
        out.append(t)
        step = 2 * step if cap is None else min(2 * step, cap)
    return out


# -- client INVITE (§17.1.1) ---------------------------------------------------------------


@pytest.mark.parametrize("timers", [DEFAULT, TimerConfig(t1=0.1, t2=1.0, t4=2.0)], ids=["default", "t1=0.1"])
def test_client_invite_timer_a_and_b_on_udp(timers: TimerConfig) -> None:
    layer, d = make_layer(timers)
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    d.drain()
    assert isinstance(tx, ClientInvite) and tx.state == "calling"
    d.run_out()
    invites = d.times(lambda s: s.method == "INVITE")
    expected = [0.0] + geometric(0.0, timers.t1, 64 * timers.t1)
    assert invites == pytest.approx(expected)
    # Timer A doubles without the T2 cap (§17.1.1.2)
    assert len(invites) == 7
    (timeout,) = d.of(TransactionTimeout)
    assert timeout.transaction is tx and tx.terminated
    assert d.now == pytest.approx(64 * timers.t1)
    assert layer.client == {}


def test_client_invite_on_tcp_sends_once_and_times_out_with_b() -> None:
    layer, d = make_layer()
    tx = layer.send_request(our_request(), TCP, 0.0)
    d.run_out()
    assert [s.at for s in d.sent] == [0.0]
    assert d.sent[0].dest == TCP
    assert [type(e) for e in d.events] == [TransactionTimeout]
    assert d.now == 32.0 and tx.terminated and layer.client == {}


def test_client_invite_adds_via_with_magic_cookie_and_rport() -> None:
    layer, d = make_layer()
    req = our_request()
    layer.send_request(req, UDP, 0.0)
    via = d.drain()[0].wire().top_via
    assert via.branch.startswith(MAGIC_COOKIE)
    assert via.transport == "UDP" and (via.host, via.port) == ("10.0.0.1", 5060)
    assert "rport" in via.params
    layer2, _ = make_layer()
    other = layer2.send_request(our_request(), UDP, 0.0)
    assert other.request.top_via.branch != via.branch


@PEERS
def test_client_invite_1xx_stops_retransmissions_and_timer_b(peer: Peer) -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, peer, 0.0)
    d.advance(0.7)
    before = len(d.sent)
    reply(d, req, 180, peer, to_tag="t1")
    assert tx.state == "proceeding"
    (ev,) = d.of(ResponseReceived)
    assert ev.response.status == 180 and ev.transaction is tx
    d.run_out()
    assert len(d.sent) == before  # no more INVITE retransmissions
    assert not d.of(TransactionTimeout)  # Timer B only runs in Calling (Figure 5)
    assert tx.state == "proceeding"


@PEERS
def test_client_invite_2xx_accepted_timer_m_and_retransmitted_2xx_passed_up(peer: Peer) -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, peer, 0.0)
    d.advance(0.2)
    reply(d, req, 100, peer)
    d.advance(3.0)
    reply(d, req, 200, peer, to_tag="t1")
    assert tx.state == "accepted"
    assert len(d.sent) == 1  # the transaction never ACKs a 2xx (§17.1.1.2; the TU does)
    reply(d, req, 200, peer, to_tag="t1")  # retransmission
    reply(d, req, 183, peer, to_tag="t1")  # absorbed
    reply(d, req, 500, peer, to_tag="t1")  # absorbed
    statuses = [e.response.status for e in d.of(ResponseReceived)]
    assert statuses == [100, 200, 200]
    assert all(e.transaction is tx for e in d.of(ResponseReceived))
    d.advance(3.0 + 64 * 0.5 - 0.001)
    assert tx.state == "accepted"
    d.run_out()
    assert d.now == pytest.approx(3.0 + 32.0)  # Timer M = 64*T1 (RFC 6026 §7.2)
    assert tx.terminated and layer.client == {}
    assert not d.of(TransactionTimeout)


def test_client_invite_2xx_in_calling_skips_proceeding() -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    d.advance(0.6)
    reply(d, req, 200, UDP, to_tag="x")
    assert tx.state == "accepted"
    d.run_out()
    assert d.times(lambda s: s.method == "INVITE") == [0.0, 0.5]


@PEERS
def test_client_invite_non_2xx_builds_ack_per_17_1_1_3(peer: Peer) -> None:
    layer, d = make_layer()
    routes = ("<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>")
    req = our_request(cseq=7, routes=routes)
    tx = layer.send_request(req, peer, 0.0)
    d.drain()
    reply(d, req, 180, peer, to_tag="rt")
    sent = reply(d, req, 486, peer, to_tag="rt")
    assert tx.state == "completed"
    (ack_sent,) = sent
    ack = ack_sent.wire()
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack_sent.dest == peer
    assert ack.uri == req.uri
    assert ack.headers.get_all("Via") == [req.headers.get("Via")]  # same branch (top Via only)
    assert ack.top_via.branch == req.top_via.branch
    assert ack.to.tag == "rt"
    assert ack.from_.tag == "ours"
    assert ack.call_id == req.call_id
    assert ack.cseq == (7, "ACK")
    assert ack.headers.get_all("Route") == list(routes)
    assert [e.response.status for e in d.of(ResponseReceived)] == [180, 486]
    # a retransmitted final response gets the same ACK again and is not passed up
    again = reply(d, req, 486, peer, to_tag="rt")
    assert [s.method for s in again] == ["ACK"]
    assert again[0].message is ack_sent.message
    assert len(d.of(ResponseReceived)) == 2
    reply(d, req, 180, peer, to_tag="rt")  # late provisional absorbed
    assert len(d.of(ResponseReceived)) == 2


@pytest.mark.parametrize("peer,timer_d", [(UDP, 32.0), (TCP, 0.0)], ids=["udp", "tcp"])
def test_client_invite_timer_d(peer: Peer, timer_d: float) -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, peer, 0.0)
    d.advance(1.0)
    reply(d, req, 603, peer, to_tag="x")
    d.run_out()
    assert tx.terminated and layer.client == {}
    assert d.now == pytest.approx(1.0 + timer_d)
    assert not d.of(TransactionTimeout)


def test_client_invite_final_in_calling_stops_timer_a() -> None:
    layer, d = make_layer()
    req = our_request()
    layer.send_request(req, UDP, 0.0)
    d.advance(0.6)
    reply(d, req, 404, UDP, to_tag="x")
    d.run_out()
    assert d.times(lambda s: s.method == "INVITE") == [0.0, 0.5]
    assert d.times(lambda s: s.method == "ACK") == [0.6]


# -- client non-INVITE (§17.1.2) -----------------------------------------------------------


@pytest.mark.parametrize("timers", [DEFAULT, TimerConfig(t1=0.25, t2=1.0, t4=3.0)], ids=["default", "custom"])
def test_client_non_invite_timer_e_capped_at_t2_and_timer_f(timers: TimerConfig) -> None:
    layer, d = make_layer(timers)
    tx = layer.send_request(our_request("OPTIONS"), UDP, 0.0)
    assert isinstance(tx, ClientNonInvite)
    d.run_out()
    expected = [0.0] + geometric(0.0, timers.t1, 64 * timers.t1, cap=timers.t2)
    assert d.times() == pytest.approx(expected)
    (ev,) = d.events
    assert isinstance(ev, TransactionTimeout) and ev.transaction is tx
    assert d.now == pytest.approx(64 * timers.t1)
    assert layer.client == {}


def test_client_non_invite_timer_e_is_t2_in_proceeding() -> None:
    layer, d = make_layer()
    req = our_request("BYE")
    tx = layer.send_request(req, UDP, 0.0)
    d.advance(0.2)
    reply(d, req, 100, UDP)
    assert tx.state == "proceeding"
    d.run_out()
    # E fires at 0.5 as armed, then every T2 (§17.1.2.2) until F at 32
    expected = [0.0, 0.5] + [0.5 + 4.0 * k for k in range(1, 8)]
    assert d.times() == pytest.approx(expected)
    assert [type(e) for e in d.events] == [ResponseReceived, TransactionTimeout]


@pytest.mark.parametrize("peer,timer_k", [(UDP, 5.0), (TCP, 0.0)], ids=["udp", "tcp"])
def test_client_non_invite_final_and_timer_k(peer: Peer, timer_k: float) -> None:
    layer, d = make_layer()
    req = our_request("BYE")
    tx = layer.send_request(req, peer, 0.0)
    d.advance(1.0)
    reply(d, req, 200, peer, to_tag="x")
    assert tx.state == "completed"
    reply(d, req, 200, peer, to_tag="x")  # absorbed in Completed
    reply(d, req, 100, peer)
    assert [e.response.status for e in d.of(ResponseReceived)] == [200]
    n = len(d.sent)
    d.run_out()
    assert len(d.sent) == n  # no retransmission after the final response
    assert tx.terminated and d.now == pytest.approx(1.0 + timer_k)


def test_client_non_invite_honours_t4() -> None:
    layer, d = make_layer(TimerConfig(t1=0.5, t2=4.0, t4=2.5))
    req = our_request("OPTIONS")
    tx = layer.send_request(req, UDP, 0.0)
    reply(d, req, 200, UDP)
    d.run_out()
    assert tx.terminated and d.now == 2.5


def test_client_non_invite_tcp_sends_once() -> None:
    layer, d = make_layer()
    layer.send_request(our_request("OPTIONS"), TCP, 0.0)
    d.run_out()
    assert d.times() == [0.0] and d.now == 32.0


# -- server INVITE (§17.2.1) ----------------------------------------------------------------


def _incoming(d: Driver, peer: Peer, method: str = "INVITE", **kw: object) -> tuple[Request, object]:
    transport = peer.transport.upper()
    d.receive(build_request(method, transport=transport, **kw), peer)  # type: ignore[arg-type]
    ev = d.of(RequestReceived)[-1]
    return ev.request, ev.transaction


@PEERS
def test_server_invite_sends_100_at_once_and_resends_last_response(peer: Peer) -> None:
    layer, d = make_layer()
    req, tx = _incoming(d, peer)
    assert isinstance(tx, ServerInvite) and tx.state == "proceeding"
    assert [s.status for s in d.sent] == [100]
    trying = d.sent[0].wire()
    assert trying.to.tag is None  # 100 may go without a To tag (§8.2.6.2)
    assert d.sent[0].dest == (peer if peer.reliable else UDP)
    d.receive(build_request("INVITE", transport=peer.transport.upper()), peer)  # retransmission
    assert [s.status for s in d.sent] == [100, 100]
    assert len(d.of(RequestReceived)) == 1  # not passed to the TU again
    layer.respond(tx, 180, now=d.now, to_tag=tx.to_tag)
    d.drain()
    d.receive(build_request("INVITE", transport=peer.transport.upper()), peer)
    assert [s.status for s in d.sent] == [100, 100, 180, 180]


@pytest.mark.parametrize("timers", [DEFAULT, TimerConfig(t1=0.2, t2=1.0, t4=5.0)], ids=["default", "custom"])
def test_server_invite_timer_g_capped_at_t2_and_timer_h(timers: TimerConfig) -> None:
    layer, d = make_layer(timers)
    _, tx = _incoming(d, UDP)
    d.advance(1.0)
    layer.respond(tx, 486, now=d.now, to_tag=tx.to_tag)
    d.drain()
    assert tx.state == "completed"
    d.run_out()
    finals = d.times(lambda s: s.status == 486)
    assert finals == pytest.approx([1.0] + geometric(1.0, timers.t1, 1.0 + 64 * timers.t1, cap=timers.t2))
    (ev,) = d.of(TransactionTimeout)
    assert ev.transaction is tx and tx.terminated
    assert d.now == pytest.approx(1.0 + 64 * timers.t1)
    assert layer.server == {}


def test_server_invite_tcp_no_timer_g_but_timer_h() -> None:
    layer, d = make_layer()
    _, tx = _incoming(d, TCP)
    layer.respond(tx, 480, now=0.0, to_tag=tx.to_tag)
    d.run_out()
    assert [s.status for s in d.sent] == [100, 480]
    assert d.of(TransactionTimeout) and d.now == 32.0


@pytest.mark.parametrize("peer,timer_i", [(UDP, 5.0), (TCP, 0.0)], ids=["udp", "tcp"])
def test_server_invite_ack_confirms_and_timer_i(peer: Peer, timer_i: float) -> None:
    layer, d = make_layer()
    _, tx = _incoming(d, peer)
    layer.respond(tx, 486, now=0.0, to_tag=tx.to_tag)
    d.drain()
    d.advance(0.6)  # one Timer G retransmission on UDP
    ack = build_request("ACK", transport=peer.transport.upper(), to_tag=tx.to_tag, cseq_method="ACK")
    d.receive(ack, peer)
    assert tx.state == "confirmed"
    assert not [e for e in d.of(RequestReceived) if e.request.method == "ACK"]  # absorbed
    n = len(d.sent)
    d.receive(build_request("INVITE", transport=peer.transport.upper()), peer)  # absorbed in Confirmed
    d.receive(ack, peer)
    assert len(d.sent) == n
    d.run_out()
    assert len(d.sent) == n and not d.of(TransactionTimeout)
    assert tx.terminated and d.now == pytest.approx(0.6 + timer_i)


def test_server_invite_honours_t4_for_timer_i() -> None:
    layer, d = make_layer(TimerConfig(t4=1.25))
    _, tx = _incoming(d, UDP)
    layer.respond(tx, 486, now=0.0, to_tag=tx.to_tag)
    d.receive(build_request("ACK", to_tag=tx.to_tag, cseq_method="ACK"), UDP)
    d.run_out()
    assert d.now == 1.25


@PEERS
def test_server_invite_2xx_accepted_timer_l_absorbs_retransmissions(peer: Peer) -> None:
    layer, d = make_layer()
    _, tx = _incoming(d, peer)
    d.advance(2.0)
    ok = layer.respond(tx, 200, now=d.now, to_tag=tx.to_tag)
    d.drain()
    assert tx.state == "accepted"
    n = len(d.sent)
    d.receive(build_request("INVITE", transport=peer.transport.upper()), peer)
    assert len(d.sent) == n  # INVITE retransmission absorbed (RFC 6026 §7.1)
    layer.send_response(tx, ok, d.now)  # the TU's own 2xx retransmission goes out
    assert [s.status for s in d.drain()] == [200]
    # an ACK for the 2xx is not the transaction's: it goes to the TU
    ack = build_request("ACK", transport=peer.transport.upper(), branch="z9hG4bK-ack2xx",
                        to_tag=tx.to_tag, cseq_method="ACK")
    d.receive(ack, peer)
    acks = [e for e in d.of(RequestReceived) if e.request.method == "ACK"]
    assert len(acks) == 1 and acks[0].transaction is None
    with pytest.raises(LocalProtocolError):
        layer.respond(tx, 486, now=d.now)
    d.run_out()
    assert tx.terminated and d.now == pytest.approx(2.0 + 32.0)
    assert layer.server == {}


def test_server_invite_ack_with_invite_branch_in_accepted_goes_to_tu() -> None:
    layer, d = make_layer()
    _, tx = _incoming(d, UDP)
    layer.respond(tx, 200, now=0.0, to_tag=tx.to_tag)
    d.receive(build_request("ACK", to_tag=tx.to_tag, cseq_method="ACK"), UDP)
    assert [e.request.method for e in d.of(RequestReceived)] == ["INVITE", "ACK"]


# -- server non-INVITE (§17.2.2) ------------------------------------------------------------


@pytest.mark.parametrize("peer,timer_j", [(UDP, 32.0), (TCP, 0.0)], ids=["udp", "tcp"])
def test_server_non_invite_states_and_timer_j(peer: Peer, timer_j: float) -> None:
    layer, d = make_layer()
    t = peer.transport.upper()
    _, tx = _incoming(d, peer, "OPTIONS")
    assert isinstance(tx, ServerNonInvite) and tx.state == "trying"
    assert d.sent == []  # no 100 for non-INVITE
    d.receive(build_request("OPTIONS", transport=t), peer)
    assert d.sent == [] and len(d.of(RequestReceived)) == 1  # Trying absorbs
    layer.respond(tx, 100, now=d.now)
    assert tx.state == "proceeding"
    d.receive(build_request("OPTIONS", transport=t), peer)
    assert [s.status for s in d.sent] == [100, 100]  # Proceeding re-sends the provisional
    d.advance(3.0)
    layer.respond(tx, 200, now=d.now, to_tag=tx.to_tag)
    d.drain()
    assert tx.state == "completed"
    d.receive(build_request("OPTIONS", transport=t), peer)
    assert [s.status for s in d.sent] == [100, 100, 200, 200]
    d.run_out()
    assert tx.terminated and layer.server == {}
    assert d.now == pytest.approx(3.0 + timer_j)
    assert [s.status for s in d.sent] == [100, 100, 200, 200]  # no retransmission on its own


def test_server_non_invite_honours_t1_for_timer_j() -> None:
    layer, d = make_layer(TimerConfig(t1=0.1))
    _, tx = _incoming(d, UDP, "OPTIONS")
    layer.respond(tx, 200, now=0.0)
    d.run_out()
    assert d.now == pytest.approx(6.4)


def test_server_non_invite_final_twice_is_local_error() -> None:
    layer, d = make_layer()
    _, tx = _incoming(d, UDP, "OPTIONS")
    layer.respond(tx, 200, now=0.0)
    with pytest.raises(LocalProtocolError):
        layer.respond(tx, 200, now=0.0)


# -- tables -----------------------------------------------------------------------------------

CLASSES = [ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite]
LOCAL_INPUTS = {"start", "transport_error", "send_1xx", "send_2xx", "send_3xx-6xx"}


def _all_inputs(cls: type[Transaction]) -> set[str]:
    timers = {i for c in CLASSES for (_, i) in c.TABLE if i.startswith("timer_")}
    return set(REMOTE_INPUTS) | LOCAL_INPUTS | timers


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_table_handlers_exist(cls: type[Transaction]) -> None:
    states = {s for s, _ in cls.TABLE}
    assert cls.INITIAL in states
    for (state, event), handler in cls.TABLE.items():
        assert callable(getattr(cls, handler, None)), (state, event, handler)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_table_unlisted_inputs_raise_the_right_error(cls: type[Transaction]) -> None:
    layer, _ = make_layer()
    req = parse_message(build_request("INVITE" if "Invite" in cls.__name__ else "OPTIONS"))
    states = {s for s, _ in cls.TABLE} | {"terminated"}
    for state in states:
        for event in _all_inputs(cls):
            if (state, event) in cls.TABLE:
                continue
            tx = cls(layer, ("k", state, event), req, UDP)
            tx.state = state
            expected = RemoteProtocolError if event in REMOTE_INPUTS else LocalProtocolError
            with pytest.raises(expected):
                tx.handle(event, 0.0, Response(status=200))


def test_response_class() -> None:
    assert [response_class(s) for s in (100, 199, 200, 299, 300, 699)] == [
        "1xx", "1xx", "2xx", "2xx", "3xx-6xx", "3xx-6xx"]


# -- layer: matching (§17.1.3, §17.2.3) --------------------------------------------------------


def test_response_matching_needs_branch_and_method() -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    d.drain()
    wrong_method = build_response(req, 200).replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    d.receive(wrong_method, UDP)
    wrong_branch = build_response(req, 200).replace(req.top_via.branch.encode(), b"z9hG4bKother")
    d.receive(wrong_branch, UDP)
    assert d.events == [] and tx.state == "calling"
    assert layer.stats["stray_response"] == 2


def test_request_matching_uses_branch_sent_by_and_method() -> None:
    layer, d = make_layer()
    d.receive(build_request("INVITE"), UDP)
    d.receive(build_request("INVITE", via_port=5070, call_id="c2"), UDP)  # other sent-by
    d.receive(build_request("OPTIONS", cseq=2), UDP)  # same branch, other method
    txs = [e.transaction for e in d.of(RequestReceived)]
    assert len(txs) == 3 and len(set(txs)) == 3
    assert len(layer.server) == 3
    # same branch, sent-by and method: a retransmission, whatever else differs (§17.2.3)
    d.receive(build_request("INVITE", call_id="c3"), UDP)
    assert len(d.of(RequestReceived)) == 3
    assert [s.status for s in d.sent] == [100, 100, 100]


def test_100_trying_not_sent_when_the_tu_answers_at_once() -> None:
    layer, d = make_layer()
    layer.receive(parse_message(build_request("INVITE")), UDP, 0.0)
    tx = layer.next_event().transaction
    layer.respond(tx, 503, now=0.0, to_tag=tx.to_tag)
    assert [t.message.status for t in layer.transmissions()] == [503]
    # an INVITE the TU drops silently (terminates) gets nothing at all
    layer.receive(parse_message(build_request("INVITE", branch="z9hG4bK-2", call_id="c2")), UDP, 0.0)
    tx2 = layer.next_event().transaction
    tx2.terminate()
    assert layer.transmissions() == [] and layer.server.get(tx2.key) is None
    # a retransmission before the adapter drained the outbox still yields one 100 only
    layer.receive(parse_message(build_request("INVITE", branch="z9hG4bK-3", call_id="c3")), UDP, 0.0)
    layer.receive(parse_message(build_request("INVITE", branch="z9hG4bK-3", call_id="c3")), UDP, 0.1)
    assert [t.message.status for t in layer.transmissions()] == [100]


def test_rfc2543_peer_without_magic_cookie_matched_by_identity() -> None:
    layer, d = make_layer()
    d.receive(build_request("INVITE", branch=None), UDP)
    d.receive(build_request("INVITE", branch=None), UDP)  # retransmission
    assert len(d.of(RequestReceived)) == 1
    assert [s.status for s in d.sent] == [100, 100]
    d.receive(build_request("INVITE", branch="1234abc", cseq=2), UDP)  # new CSeq: a new request
    assert len(d.of(RequestReceived)) == 2
    # ACK for a non-2xx from the old peer matches the INVITE by identity
    tx = d.of(RequestReceived)[0].transaction
    layer.respond(tx, 486, now=0.0, to_tag=tx.to_tag)
    d.receive(build_request("ACK", branch=None, to_tag=tx.to_tag, cseq_method="ACK"), UDP)
    assert tx.state == "confirmed"


def test_rfc2543_cancel_matches_its_invite() -> None:
    layer, d = make_layer()
    d.receive(build_request("INVITE", branch=None), UDP)
    inv = d.of(RequestReceived)[0].transaction
    d.receive(build_request("CANCEL", branch=None), UDP)
    assert [s.status for s in d.sent] == [100, 200, 487]
    assert d.of(InviteCancelled)[0].transaction is inv


def test_received_and_rport_stamped_and_response_routed_there() -> None:
    layer, d = make_layer()
    nat = Peer("udp", "198.51.100.7", 31337)
    d.receive(build_request("OPTIONS", via_host="192.168.1.20", rport=True,
                            vias=("SIP/2.0/UDP p.example;branch=z9hG4bKx",)), nat)
    (ev,) = d.of(RequestReceived)
    top = ev.request.top_via
    assert top.params["received"] == "198.51.100.7"
    assert top.params["rport"] == "31337"
    assert len(ev.request.vias) == 2 and ev.request.vias[1].host == "p.example"
    resp = layer.respond(ev.transaction, 200, now=0.0)
    (sent,) = d.drain()
    assert sent.dest == Peer("udp", "198.51.100.7", 31337)
    assert sent.wire().top_via.params["rport"] == "31337"
    assert response_destination(resp, None) == Peer("udp", "198.51.100.7", 31337)


def test_received_without_rport_goes_to_via_port() -> None:
    layer, d = make_layer()
    nat = Peer("udp", "198.51.100.7", 4000)
    d.receive(build_request("OPTIONS", via_host="192.168.1.20", via_port=5062), nat)
    (ev,) = d.of(RequestReceived)
    assert ev.request.top_via.params["received"] == "198.51.100.7"
    assert "rport" not in ev.request.top_via.params
    layer.respond(ev.transaction, 200, now=0.0)
    assert d.drain()[0].dest == Peer("udp", "198.51.100.7", 5062)


def test_same_host_no_received_and_default_port() -> None:
    layer, d = make_layer()
    d.receive(build_request("OPTIONS", via_port=None), UDP)
    (ev,) = d.of(RequestReceived)
    assert "received" not in ev.request.top_via.params
    layer.respond(ev.transaction, 200, now=0.0)
    assert d.drain()[0].dest == Peer("udp", "192.0.2.10", 5060)


def test_tcp_responses_go_back_on_the_same_connection() -> None:
    layer, d = make_layer()
    conn = Peer("tcp", "198.51.100.7", 50555, conn=42)
    d.receive(build_request("INVITE", transport="TCP", via_host="192.168.1.20", via_port=5060), conn)
    assert d.sent[0].dest == conn
    tx = d.of(RequestReceived)[0].transaction
    layer.respond(tx, 486, now=0.0, to_tag=tx.to_tag)
    assert d.drain()[0].dest == conn


def test_stray_response_dropped_and_counted() -> None:
    layer, d = make_layer()
    req = our_request()
    req.headers.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnever")
    d.receive(build_response(req, 200), UDP)
    assert d.events == [] and d.sent == []
    assert layer.stats["stray_response"] == 1


def test_input_a_state_does_not_list_is_dropped_and_counted() -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    reply(d, req, 486, UDP, to_tag="x")
    n = len(d.sent)
    reply(d, req, 200, UDP, to_tag="x")  # a 2xx after a non-2xx final: Completed has no such input
    assert layer.stats["dropped_RemoteProtocolError"] == 1
    assert tx.state == "completed" and len(d.sent) == n
    assert [e.response.status for e in d.of(ResponseReceived)] == [486]
    # a response without a Via cannot be matched at all: dropped as a parse fault
    no_via = Response(status=200, headers=req.headers.without("Via"))
    layer.receive(no_via, UDP, d.now)
    assert layer.stats["dropped_SipParseError"] == 1
    # an ACK matching an INVITE server transaction still in Proceeding is not the transaction's
    _, stx = _incoming(d, UDP)
    d.receive(build_request("ACK", cseq_method="ACK"), UDP)
    assert stx.state == "proceeding"


def test_merged_request_gets_482() -> None:
    layer, d = make_layer()
    d.receive(build_request("INVITE", branch="z9hG4bK-path-a"), UDP)
    d.receive(build_request("INVITE", branch="z9hG4bK-path-b"), UDP)  # forked copy via another path
    assert len(d.of(RequestReceived)) == 1
    assert [s.status for s in d.sent] == [100, 482]
    assert d.sent[1].wire().to.tag  # §8.2.6.2: a final response carries a To tag
    assert layer.stats["merged_request"] == 1
    # with a To tag it is in-dialog and not a merge candidate
    d.receive(build_request("INVITE", branch="z9hG4bK-path-c", to_tag="x"), UDP)
    assert len(d.of(RequestReceived)) == 2


def test_merge_record_released_with_the_transaction() -> None:
    layer, d = make_layer()
    _, tx = _incoming(d, UDP, "OPTIONS")
    layer.respond(tx, 200, now=0.0)
    d.run_out()
    assert layer.server == {} and layer._merge == {}
    d.receive(build_request("OPTIONS", branch="z9hG4bK-later"), UDP)
    assert len(d.of(RequestReceived)) == 2


# -- layer: CANCEL (§9) ----------------------------------------------------------------------------


@PEERS
def test_cancel_gets_200_and_invite_487_and_event(peer: Peer) -> None:
    layer, d = make_layer()
    t = peer.transport.upper()
    _, inv = _incoming(d, peer)
    layer.respond(inv, 180, now=0.0, to_tag=inv.to_tag)
    d.drain()
    d.receive(build_request("CANCEL", transport=t), peer)
    statuses = [(s.status, s.wire().cseq[1]) for s in d.sent]
    assert statuses == [(100, "INVITE"), (180, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    ok_cancel, terminated = d.sent[2].wire(), d.sent[3].wire()
    assert terminated.to.tag == inv.to_tag
    assert ok_cancel.to.tag == inv.to_tag  # §9.2: SHOULD be the INVITE response's To tag
    (ev,) = d.of(InviteCancelled)
    assert ev.transaction is inv and inv.state == "completed"
    assert not [e for e in d.of(RequestReceived) if e.request.method == "CANCEL"]
    # a retransmitted CANCEL gets the same 200
    d.receive(build_request("CANCEL", transport=t), peer)
    assert d.sent[-1].status == 200 and len(d.of(InviteCancelled)) == 1
    d.receive(build_request("ACK", transport=t, to_tag=inv.to_tag, cseq_method="ACK"), peer)
    assert inv.state == "confirmed"
    d.run_out()
    assert layer.server == {}


def test_cancel_without_invite_gets_481() -> None:
    layer, d = make_layer()
    d.receive(build_request("CANCEL"), UDP)
    (sent,) = d.sent
    assert sent.status == 481 and sent.wire().cseq == (1, "CANCEL")
    assert sent.wire().to.tag
    assert d.events == []


def test_cancel_after_final_gets_200_only() -> None:
    layer, d = make_layer()
    _, inv = _incoming(d, UDP)
    layer.respond(inv, 200, now=0.0, to_tag=inv.to_tag)
    d.drain()
    d.receive(build_request("CANCEL"), UDP)
    assert [s.status for s in d.sent] == [100, 200, 200]
    assert d.sent[-1].wire().cseq[1] == "CANCEL"
    assert not d.of(InviteCancelled) and inv.state == "accepted"


def _cancels(d: Driver) -> list:
    return [s for s in d.sent if s.method == "CANCEL"]


def test_send_cancel_before_1xx_waits_for_provisional() -> None:
    layer, d = make_layer()
    req = our_request(routes=("<sip:p1;lr>",))
    tx = layer.send_request(req, UDP, 0.0)
    d.advance(0.7)
    assert layer.send_cancel(tx, d.now) is None  # §9.1: not before a provisional response
    d.drain()
    assert not _cancels(d)
    d.advance(1.0)
    reply(d, req, 180, UDP, to_tag="x")
    (c,) = _cancels(d)
    cancel = c.wire()
    assert c.at == 1.0
    assert cancel.uri == req.uri
    assert cancel.headers.get_all("Via") == [req.headers.get("Via")]
    assert cancel.cseq == (1, "CANCEL")
    assert cancel.to.tag is None and cancel.from_.tag == "ours"
    assert cancel.headers.get_all("Route") == ["<sip:p1;lr>"]
    assert len(layer.client) == 2
    # the CANCEL is a non-INVITE client transaction with its own retransmissions
    reply(d, cancel, 200, UDP, to_tag="x")
    reply(d, req, 487, UDP, to_tag="x")
    assert [e.response.status for e in d.of(ResponseReceived)] == [180, 200, 487]
    d.run_out()
    assert layer.client == {}


def test_send_cancel_twice_sends_one_cancel() -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    reply(d, req, 180, UDP, to_tag="x")
    first = layer.send_cancel(tx, 0.0)
    assert first is not None and layer.send_cancel(tx, 0.1) is first
    d.drain()
    assert len(_cancels(d)) == 1


def test_send_cancel_after_final_does_nothing() -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    reply(d, req, 486, UDP, to_tag="x")
    assert layer.send_cancel(tx, 0.0) is None
    reply(d, req, 180, UDP)  # nothing pending either
    assert not _cancels(d)


def test_send_cancel_before_1xx_then_final_sends_no_cancel() -> None:
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    layer.send_cancel(tx, 0.0)
    reply(d, req, 200, UDP, to_tag="x")
    d.run_out()
    assert not _cancels(d)


def test_cancelled_invite_without_final_response_is_destroyed() -> None:
    """§9.1: no final response 64*T1 after the CANCEL — the INVITE transaction is given up."""
    layer, d = make_layer()
    req = our_request()
    tx = layer.send_request(req, UDP, 0.0)
    reply(d, req, 180, UDP, to_tag="x")
    d.advance(10.0)
    layer.send_cancel(tx, d.now)
    d.run_out()
    assert tx.terminated and layer.client == {}
    assert [e.transaction for e in d.of(TransactionTimeout)][-1] is tx
    assert d.now == pytest.approx(10.0 + 32.0)


# -- layer: transport errors (§17.1.4, §17.2.4) -------------------------------------------------------


def test_transport_error_fails_bound_transactions_only() -> None:
    layer, d = make_layer()
    other = Peer("tcp", "203.0.113.5", 5060, conn=9)
    a = layer.send_request(our_request(), TCP, 0.0)
    b = layer.send_request(our_request("OPTIONS"), TCP, 0.0)
    c = layer.send_request(our_request("OPTIONS"), other, 0.0)
    _, s = _incoming(d, TCP)
    d.drain()
    layer.transport_error(TCP, 1.0)
    d.drain()
    failed = {e.transaction for e in d.of(TransportFailed)}
    assert failed == {a, b, s}
    assert c.state == "trying" and all(x.terminated for x in (a, b, s))


def test_transport_error_in_states_without_transition_does_not_raise() -> None:
    """Accepted/Completed/Confirmed transactions have no transport-error transition."""
    layer, d = make_layer()
    req = our_request()
    inv = layer.send_request(req, TCP, 0.0)
    reply(d, req, 200, TCP, to_tag="x")
    opt_req = our_request("OPTIONS")
    opt = layer.send_request(opt_req, UDP, 0.0)
    reply(d, opt_req, 200, UDP)
    _, s1 = _incoming(d, UDP)
    layer.respond(s1, 200, now=0.0, to_tag=s1.to_tag)
    d.receive(build_request("INVITE", branch="z9hG4bK-2", call_id="c2"), UDP)
    s2 = d.of(RequestReceived)[-1].transaction
    layer.respond(s2, 486, now=0.0, to_tag=s2.to_tag)
    ack = build_request("ACK", branch="z9hG4bK-2", call_id="c2", to_tag=s2.to_tag, cseq_method="ACK")
    d.receive(ack, UDP)
    assert (inv.state, opt.state, s1.state, s2.state) == ("accepted", "completed", "accepted", "confirmed")
    layer.transport_error(TCP, 0.0)
    layer.transport_error(UDP, 0.0)
    d.run_out()
    assert layer.client == {} and layer.server == {}


# -- randomized: the layer under arbitrary peer input and timer firings ----------------------------------

_PEER_ACTIONS = st.one_of(
    st.tuples(st.just("req"), st.sampled_from(["INVITE", "OPTIONS", "BYE", "CANCEL", "ACK", "INFO"]),
              st.integers(0, 2), st.booleans(), st.booleans()),
    st.tuples(st.just("resp"), st.integers(0, 3),
              st.sampled_from([100, 180, 183, 199, 200, 202, 299, 302, 407, 486, 487, 500, 603, 699]),
              st.booleans()),
    st.tuples(st.just("garbage"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("tu_send"), st.sampled_from(["INVITE", "OPTIONS", "BYE"]), st.booleans()),
    st.tuples(st.just("tu_respond"), st.integers(0, 5), st.sampled_from([100, 180, 200, 486, 503])),
    st.tuples(st.just("tu_cancel"), st.integers(0, 3)),
    st.tuples(st.just("transport_error"), st.booleans()),
    st.tuples(st.just("wait"), st.floats(0.0, 40.0, allow_nan=False)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PEER_ACTIONS, max_size=40), st.sampled_from([DEFAULT, TimerConfig(0.1, 0.4, 1.0)]))
def test_layer_survives_random_traffic_and_never_leaks(actions: list[tuple], timers: TimerConfig) -> None:
    layer, d = make_layer(timers)
    ours: list[tuple[Request, Transaction]] = []
    server_txs: list[Transaction] = []
    for action in actions:
        kind = action[0]
        if kind == "req":
            _, method, n, tagged, tcp = action
            peer = TCP if tcp else UDP
            raw = build_request(method, transport=peer.transport.upper(), branch=f"z9hG4bK-r{n}",
                                to_tag="tt" if tagged or method == "ACK" else None, cseq=n + 1,
                                cseq_method="INVITE" if method == "ACK" and n == 0 else None)
            d.receive(raw, peer)
        elif kind == "resp" and ours:
            _, i, status, tagged = action
            req, tx = ours[i % len(ours)]
            if req.method != "INVITE" and status == 487:
                status = 481
            reply(d, req, status, tx.peer, to_tag="rt" if tagged or status >= 200 else None)
        elif kind == "garbage":
            _, which, i = action
            if which == 0 and ours:  # a response to a CANCEL we never sent
                req, tx = ours[i % len(ours)]
                d.receive(build_response(req, 200).replace(b" INVITE\r\n", b" CANCEL\r\n"), tx.peer)
            elif which == 1 and ours:  # a response whose top Via is not ours
                req, tx = ours[i % len(ours)]
                d.receive(build_response(req, 200).replace(b"z9hG4bK", b"z9hG4bKx", 1), tx.peer)
            elif which == 2:  # an RFC 2543 request without a branch
                d.receive(build_request("INVITE", branch=None, cseq=50 + i), UDP)
            elif which == 3:  # an ACK nobody asked for
                stray = build_request("ACK", branch=f"z9hG4bK-stray{i}", to_tag="x", cseq_method="ACK")
                d.receive(stray, UDP)
            elif which == 4:  # a CANCEL for an INVITE that may or may not exist
                d.receive(build_request("CANCEL", branch=f"z9hG4bK-r{i}", cseq=i + 1), UDP)
            elif which == 5 and ours:  # a response with a CSeq number from elsewhere
                req, tx = ours[i % len(ours)]
                d.receive(build_response(req, 486).replace(b"CSeq: ", b"CSeq: 9", 1), tx.peer)
        elif kind == "tu_send":
            _, method, tcp = action
            req = our_request(method, cseq=len(ours) + 1)
            tx = layer.send_request(req, TCP if tcp else UDP, d.now)
            ours.append((req, tx))
        elif kind == "tu_respond" and server_txs:
            _, i, status = action
            tx = server_txs[i % len(server_txs)]
            try:
                layer.respond(tx, status, now=d.now, to_tag=tx.to_tag)
            except LocalProtocolError:
                pass  # our own misuse in this random script: reported, not swallowed by the layer
        elif kind == "tu_cancel" and ours:
            _, i = action
            _req, tx = ours[i % len(ours)]
            if isinstance(tx, ClientInvite):
                layer.send_cancel(tx, d.now)
        elif kind == "transport_error":
            layer.transport_error(TCP if action[1] else UDP, d.now)
        elif kind == "wait":
            d.advance(d.now + action[1])
        d.drain()
        server_txs.extend(e.transaction for e in d.events
                          if isinstance(e, RequestReceived) and e.transaction is not None)
        timer = layer.get_timer()
        assert timer is None or timer >= d.now
    # the TU finishes what it owns: final responses for pending server transactions,
    # a final response or a CANCEL for each pending INVITE
    for tx in server_txs:
        if not tx.terminated and tx.state in ("trying", "proceeding"):
            layer.respond(tx, 500, now=d.now, to_tag=tx.to_tag)
    for req, tx in ours:
        if isinstance(tx, ClientInvite) and tx.state == "proceeding":
            layer.send_cancel(tx, d.now)
    d.drain()
    d.run_out()
    assert layer.client == {} and layer.server == {}
    assert layer._merge == {}
    assert layer.get_timer() is None
