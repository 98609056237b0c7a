"""The sans-IO transaction layer: matching (§17.1.3, §17.2.3), timers, response routing (§18).

Feed it parsed messages with ``receive(msg, source, now)``; call ``handle_timer(now)`` when
``get_timer()`` is due; drain ``transmissions()`` to the sockets and ``next_event()`` to the TU.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable

from acd.sip.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from acd.sip.events import (
    Event,
    InviteCancelled,
    Peer,
    RequestReceived,
    TimerConfig,
    Transmit,
)
from acd.sip.message import Message, Request, Response, make_response
from acd.sip.transaction import (
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
    Transaction,
    response_class,
)
from acd.sip.uri import format_host

__all__ = ["TransactionLayer", "MAGIC_COOKIE", "new_branch", "response_destination"]

log = logging.getLogger(__name__)

MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def response_destination(msg: Response, source: Peer | None) -> Peer:
    """Where a response goes (§18.2.2, RFC 3581 §4): the same connection when reliable,
    else ``received``/``rport`` of the top Via, else its sent-by."""
    via = msg.top_via
    transport = via.transport.lower()
    if source is not None and source.reliable:
        return source
    host = via.params.get("received") or via.host
    rport = via.params.get("rport")
    if rport and rport.isdigit():
        port = int(rport)
    elif source is not None and "rport" in via.params:
        port = source.port
    else:
        port = via.port or (5061 if transport == "tls" else 5060)
    return Peer(transport, host, port)


class TransactionLayer:
    """All transactions of one SIP endpoint."""

    def __init__(self, timers: TimerConfig, sent_by: Callable[[str], tuple[str, int]]) -> None:
        self.timers = timers
        self.sent_by = sent_by  # transport → (host, port) advertised in our Via
        self.client: dict[tuple, Transaction] = {}
        self.server: dict[tuple, Transaction] = {}
        self._merge: dict[tuple, tuple] = {}  # §8.2.2.2 (from-tag, call-id, cseq) → server key
        self._heap: list[tuple[float, int, Transaction, str]] = []
        self._seq = itertools.count()
        self._events: deque[Event] = deque()
        self._out: list[Transmit] = []
        self._trying: list[tuple[ServerInvite, float]] = []  # INVITEs owed a 100 Trying
        self.stats: Counter[str] = Counter()

    # -- plumbing used by transactions ------------------------------------------------

    def schedule(self, tx: Transaction, name: str, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), tx, name))

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def transmit(self, message: Message, dest: Peer) -> None:
        self._out.append(Transmit(message, dest))

    def forget(self, tx: Transaction) -> None:
        table = self.server if isinstance(tx, (ServerInvite, ServerNonInvite)) else self.client
        if table.get(tx.key) is tx:
            del table[tx.key]
        if isinstance(tx, (ServerInvite, ServerNonInvite)):
            self._merge.pop(_merge_key(tx.request), None)

    # -- adapter interface ------------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def transmissions(self) -> list[Transmit]:
        # §17.2.1: 100 Trying unless the TU already answered (or silently dropped) the INVITE
        trying, self._trying = self._trying, []
        for tx, at in trying:
            if tx.state == "proceeding" and tx.last_response is None and self.server.get(tx.key) is tx:
                self.respond(tx, 100, now=at)
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        while self._heap:
            deadline, _, tx, name = self._heap[0]
            if tx.timers.get(name) == deadline:
                return deadline
            heapq.heappop(self._heap)
        return None

    def handle_timer(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            deadline, _, tx, name = heapq.heappop(self._heap)
            if tx.timers.get(name) == deadline:
                tx.fire(name, now)

    def transport_error(self, dest: Peer, now: float) -> None:
        """A send to ``dest`` failed (§8.1.3.1, §17.1.4): fail the transactions bound to it."""
        for tx in list(self.client.values()) + list(self.server.values()):
            # only transactions still waiting: a late error must not end an answered call
            if tx.peer == dest and tx.state in ("calling", "trying", "proceeding"):
                try:
                    tx.handle("transport_error", now)
                except RemoteProtocolError:
                    tx.terminate()

    def receive(self, msg: Message, source: Peer, now: float) -> None:
        try:
            if isinstance(msg, Request):
                self._receive_request(msg, source, now)
            else:
                self._receive_response(msg, now)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            self.stats["dropped_" + type(exc).__name__] += 1
            log.debug("dropped %r from %s: %s", msg, source, exc.reason)

    # -- TU interface -----------------------------------------------------------------

    def send_request(self, request: Request, dest: Peer, now: float) -> Transaction:
        """Start a client transaction; adds our Via with a fresh branch (§8.1.1.7)."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK has no client transaction; use send_stateless")
        host, port = self.sent_by(dest.transport)
        request.headers.prepend(
            "Via", f"SIP/2.0/{dest.transport.upper()} {format_host(host)}:{port};branch={new_branch()};rport"
        )
        cls = ClientInvite if request.method == "INVITE" else ClientNonInvite
        key = (request.top_via.branch, request.method)
        tx = cls(self, key, request, dest)
        self.client[key] = tx
        tx.handle("start", now)
        return tx

    def send_stateless(self, message: Message, dest: Peer) -> None:
        """Send outside any transaction: ACK for 2xx (§13.2.2.4), 2xx retransmissions."""
        if isinstance(message, Request) and message.headers.get("Via") is None:
            host, port = self.sent_by(dest.transport)
            message.headers.prepend(
                "Via", f"SIP/2.0/{dest.transport.upper()} {format_host(host)}:{port};branch={new_branch()};rport"
            )
        self.transmit(message, dest)

    def send_response(self, tx: Transaction, response: Response, now: float) -> None:
        tx.handle("send_" + response_class(response.status), now, response)

    def respond(self, tx: Transaction, status: int, reason: str | None = None, now: float = 0.0,
                **kwargs: object) -> Response:
        resp = make_response(tx.request, status, reason, **kwargs)  # type: ignore[arg-type]
        self.send_response(tx, resp, now)
        return resp

    def send_cancel(self, tx: ClientInvite, now: float) -> Transaction | None:
        """CANCEL a pending INVITE (§9.1): only after a provisional response arrived."""
        if tx.state == "calling":
            tx.cancel_pending = True
            return None
        if tx.state != "proceeding":
            return None
        pending = self.client.get((tx.request.top_via.branch, "CANCEL"))
        if pending is not None:
            return pending  # one CANCEL per request (§9.1)
        req = tx.request
        cancel = Request(method="CANCEL", uri=req.uri)
        cancel.headers.add("Via", req.headers.get("Via") or "")
        for route in req.headers.get_all("Route"):
            cancel.headers.add("Route", route)
        for name in ("From", "To", "Call-ID"):
            cancel.headers.add(name, req.headers.get(name) or "")
        cancel.headers.add("CSeq", f"{req.cseq[0]} CANCEL")
        cancel.headers.add("Max-Forwards", "70")
        key = (cancel.top_via.branch, "CANCEL")
        ctx = ClientNonInvite(self, key, cancel, tx.peer)
        self.client[key] = ctx
        ctx.handle("start", now)
        # §9.1: no final response 64*T1 after the CANCEL — destroy the INVITE transaction
        tx.set_timer("cancel", now, 64 * self.timers.t1)
        return ctx

    # -- matching ---------------------------------------------------------------------

    def _receive_response(self, resp: Response, now: float) -> None:
        via = resp.top_via
        _, method = resp.cseq
        host, port = self.sent_by(via.transport.lower())
        if (via.host, via.port or 5060) != (host.lower(), port):
            # §18.1.2: the top Via's sent-by is not ours — silently discard
            self.stats["foreign_via_response"] += 1
            return
        tx = self.client.get((via.branch, method))
        if tx is None:
            # §18.1.2: a stray response (or one whose Via is not ours) is dropped
            self.stats["stray_response"] += 1
            log.debug("stray response %s %s (branch %s)", resp.status, method, via.branch)
            return
        tx.handle(response_class(resp.status), now, resp)

    def _receive_request(self, req: Request, source: Peer, now: float) -> None:
        self._stamp_via(req, source)
        key = _server_key(req)
        method = req.method
        if method == "ACK":
            tx = self.server.get(key)
            if tx is not None and tx.state in ("completed", "confirmed"):
                tx.handle("ack", now, req)
                return
            self.emit(RequestReceived(req, source, None))  # ACK for a 2xx goes to the dialog
            return
        tx = self.server.get(key)
        if tx is not None:
            tx.handle("request", now, req)  # retransmission
            return
        if method == "CANCEL":
            self._receive_cancel(req, source, key, now)
            return
        mkey = _merge_key(req)
        if mkey is not None:
            if mkey in self._merge and self._merge[mkey] != key:
                # §8.2.2.2 merged request: same From tag, Call-ID and CSeq, other branch
                self.transmit(make_response(req, 482, to_tag=secrets.token_hex(6)), _reply_peer(req, source))
                self.stats["merged_request"] += 1
                return
            self._merge[mkey] = key
        cls = ServerInvite if method == "INVITE" else ServerNonInvite
        tx = cls(self, key, req, _reply_peer(req, source))
        self.server[key] = tx
        if method == "INVITE":
            self._trying.append((tx, now))  # §17.2.1: 100 Trying, sent with the next transmissions()
        self.emit(RequestReceived(req, source, tx))

    def _receive_cancel(self, req: Request, source: Peer, key: tuple, now: float) -> None:
        ctx = ServerNonInvite(self, key, req, _reply_peer(req, source))
        self.server[key] = ctx
        invite = self.server.get((key[0], key[1], "INVITE"))
        if invite is None or not isinstance(invite, ServerInvite):
            self.respond(ctx, 481, now=now, to_tag=ctx.to_tag)  # §9.2
            return
        self.respond(ctx, 200, now=now, to_tag=invite.to_tag)  # §9.2: the INVITE's To tag
        if invite.state == "proceeding":
            self.respond(invite, 487, now=now, to_tag=invite.to_tag)
            self.emit(InviteCancelled(invite))

    @staticmethod
    def _stamp_via(req: Request, source: Peer) -> None:
        """§18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via."""
        top = req.headers.get("Via")
        via = req.top_via
        params: dict[str, str | None] = {}
        if "rport" in via.params and not via.params["rport"]:
            params["rport"] = str(source.port)
            params["received"] = source.host
        elif via.host != source.host:
            params["received"] = source.host
        if params and top is not None:
            vias = req.headers.get_all("Via")
            req.headers.remove("Via")
            req.headers.add("Via", str(via.with_params(**params)))
            for v in vias[1:]:
                req.headers.add("Via", v)


def _server_key(req: Request) -> tuple:
    via = req.top_via
    branch = via.branch or ""
    method = "INVITE" if req.method == "ACK" else req.method
    if branch.startswith(MAGIC_COOKIE):
        return (branch, f"{via.host}:{via.port}", method)
    # RFC 2543 peers (§17.2.3): match on the request's identity instead of the branch
    seq, _ = req.cseq
    return (f"2543:{req.call_id}:{req.from_.tag}:{seq}:{req.uri}", f"{via.host}:{via.port}", method)


def _merge_key(req: Request) -> tuple | None:
    try:
        if req.to.tag is not None or req.method in ("ACK", "CANCEL"):
            return None
        return (req.from_.tag, req.call_id, req.headers.get("CSeq"))
    except SipParseError:
        return None


def _reply_peer(req: Request, source: Peer) -> Peer:
    probe = Response(headers=req.headers.copy())
    return response_destination(probe, source)
