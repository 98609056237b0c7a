"""The user-agent core (RFC 3261 §8, §12–§15): dispatches transaction events to calls, answers
what no call owns (OPTIONS, 481, 405, 501, 420) and applies the application's admission rule.

Sans-IO like the layer below: ``receive``/``handle_timer`` in, ``transmissions``/``next_event``
out, ``get_timer`` for the one deadline the adapter re-arms.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from acd.sip.call import Call, CallEnded, IncomingCall
from acd.sip.dialog import Dialog, new_call_id, new_tag
from acd.sip.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from acd.sip.events import (
    Event,
    InviteCancelled,
    Peer,
    RequestReceived,
    ResponseReceived,
    TimerConfig,
    TransactionTimeout,
    Transmit,
    TransportFailed,
)
from acd.sip.layer import TransactionLayer
from acd.sip.message import Message, Request, Response, make_response
from acd.sip.transaction import Transaction, response_class
from acd.sip.uri import parse_uri

__all__ = ["UserAgent", "Admission", "ALLOW", "KNOWN_METHODS", "CallEnded"]

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
KNOWN_METHODS = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "REGISTER",
                           "SUBSCRIBE", "NOTIFY", "MESSAGE", "PUBLISH", "REFER", "PRACK", "UPDATE"})
URI_SCHEMES = frozenset({"sip", "sips", "tel"})
SUPPORTED: frozenset[str] = frozenset()  # option tags we implement (§8.2.2.3)

# admission(request, source, now) → a trunk name (or None) to accept, or (status, reason,
# extra headers) to refuse; status 0 drops the request silently
Admission = Callable[[Request, Peer, float], "tuple[int, str | None, tuple[tuple[str, str], ...]] | str | None"]
ResultHandler = Callable[[Event, float], None]


class UserAgent:
    def __init__(
        self,
        timers: TimerConfig,
        sent_by: Callable[[str], tuple[str, int]],
        *,
        contact: Callable[[str], str],
        user_agent: str = "Homeline",
        admission: Admission | None = None,
        authorize: Callable[[Call, Response], Iterable[tuple[str, str]] | None] | None = None,
    ) -> None:
        self.timers = timers
        self.layer = TransactionLayer(timers, sent_by)
        self.contact = contact  # transport → our Contact URI
        self.user_agent = user_agent
        self.admission = admission
        self.authorize = authorize  # builds Authorization headers for a 401/407 on our INVITE
        self.dialogs: dict[tuple[str, str, str], Call] = {}
        self.calls: dict[Transaction, Call] = {}  # INVITE transaction → call
        self._handlers: dict[Transaction, ResultHandler] = {}
        self._heap: list[tuple[float, int, Call, str]] = []
        self._seq = itertools.count()
        self._events: deque[Event] = deque()
        self.stats: Counter[str] = self.layer.stats
        self.accepting = True  # False during drain: new INVITEs get 503

    # -- adapter interface ------------------------------------------------------------

    def receive(self, msg: Message, source: Peer, now: float) -> None:
        self.layer.receive(msg, source, now)
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        self.layer.handle_timer(now)
        while self._heap and self._heap[0][0] <= now:
            deadline, _, call, name = heapq.heappop(self._heap)
            if call.timers.get(name) == deadline:
                self._guard(call.fire, name, now)
        self._pump(now)

    def get_timer(self) -> float | None:
        while self._heap and self._heap[0][2].timers.get(self._heap[0][3]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        own = self._heap[0][0] if self._heap else None
        lower = self.layer.get_timer()
        if own is None or lower is None:
            return own if lower is None else lower
        return min(own, lower)

    def transmissions(self) -> list[Transmit]:
        return self.layer.transmissions()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def transport_error(self, dest: Peer, now: float) -> None:
        self.layer.transport_error(dest, now)
        self._pump(now)

    # -- used by Call ------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def schedule(self, call: Call, name: str, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), call, name))

    def register_dialog(self, call: Call) -> None:
        d = call.dialog
        assert d is not None
        self.dialogs[(d.call_id, d.local_tag, d.remote_tag)] = call

    def forget_call(self, call: Call) -> None:
        d = call.dialog
        if d is not None:
            self.dialogs.pop((d.call_id, d.local_tag, d.remote_tag), None)
        if call.invite_tx is not None:
            self.calls.pop(call.invite_tx, None)

    def respond_invite(self, call: Call, status: int, now: float, *, body: bytes = b"",
                       reason: str | None = None, headers: Iterable[tuple[str, str]] = ()) -> Response:
        tx = call.invite_tx
        resp = make_response(tx.request, status, reason, to_tag=tx.to_tag, headers=headers)
        self._decorate(resp, call.peer.transport, body, dialog=100 < status < 300)
        if 100 < status < 300 and call.dialog is None:
            call.dialog = Dialog.from_uas(tx.request, tx.to_tag, call.peer)
            self.register_dialog(call)
        self.layer.send_response(tx, resp, now)
        return resp

    def respond_in_dialog(self, call: Call, tx: Transaction, status: int, now: float, *,
                          body: bytes = b"") -> Response:
        resp = make_response(tx.request, status, to_tag=call.dialog.local_tag if call.dialog else None)
        self._decorate(resp, call.peer.transport, body, dialog=tx.request.method == "INVITE" and status < 300)
        self.layer.send_response(tx, resp, now)
        return resp

    def send_in_dialog(self, call: Call, method: str, now: float, *, body: bytes = b"") -> Transaction:
        """In-dialog requests go to the address the dialog was learnt from (symmetric, for NAT)."""
        assert call.dialog is not None
        req = call.dialog.create_request(method, contact=self.contact(call.peer.transport)
                                         if method == "INVITE" else None, body=body)
        req.headers.add("User-Agent", self.user_agent)
        tx = self.layer.send_request(req, call.peer, now)
        self._handlers[tx] = lambda ev, t: self._in_dialog_result(call, method, ev, t)
        return tx

    def send_ack(self, call: Call, cseq: int) -> None:
        assert call.dialog is not None
        ack = call.dialog.create_ack(cseq)
        self.layer.send_stateless(ack, call.peer)

    def retry_with_auth(self, call: Call, resp: Response, now: float) -> bool:
        """Resend our INVITE with credentials after 401/407 (§22.2), at most twice."""
        if self.authorize is None or call.auth_tries >= 2 or call.invite is None:
            return False
        headers = self.authorize(call, resp)
        if not headers:
            return False
        call.auth_tries += 1
        old = call.invite
        req = Request(method="INVITE", uri=old.uri, body=old.body,
                      headers=old.headers.without("Via", "Authorization", "Proxy-Authorization", "CSeq"))
        req.headers.add("CSeq", f"{old.cseq[0] + 1} INVITE")
        for name, value in headers:
            req.headers.add(name, value)
        self._start_invite(call, req, now)
        return True

    # -- application interface ---------------------------------------------------------

    def invite(self, uri: str, dest: Peer, now: float, *, from_uri: str, to_uri: str | None = None,
               sdp: bytes = b"", trunk: str | None = None,
               headers: Iterable[tuple[str, str]] = ()) -> Call:
        """Place an outbound call (§13.2.1)."""
        call_id = new_call_id(self.layer.sent_by(dest.transport)[0])
        call = Call(ua=self, direction="out", call_id=call_id, peer=dest, state="calling",
                    local_sdp=sdp, trunk=trunk, started=now)
        req = Request(method="INVITE", uri=uri)
        h = req.headers
        h.add("Max-Forwards", "70")
        h.add("From", f"<{from_uri}>;tag={new_tag()}")
        h.add("To", f"<{to_uri or uri}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", "1 INVITE")
        for name, value in headers:
            h.add(name, value)
        self._decorate(req, dest.transport, sdp, dialog=True)
        req.body = sdp
        self._start_invite(call, req, now)
        return call

    def request(self, req: Request, dest: Peer, now: float, handler: ResultHandler) -> Transaction:
        """Send an out-of-dialog request (REGISTER, OPTIONS); ``handler`` gets its results."""
        req.headers.add("User-Agent", self.user_agent)
        tx = self.layer.send_request(req, dest, now)
        self._handlers[tx] = handler
        self._pump(now)
        return tx

    def act(self, call: Call, action: str, now: float, arg: Any = None) -> None:
        """Local call actions: ring, answer(sdp), reject(status|(status, reason, headers)),
        hangup, reoffer_answer(sdp), reoffer_reject(status), reoffer_send(sdp)."""
        call.handle(action, now, arg)
        self._pump(now)

    # -- internals ---------------------------------------------------------------------

    def _start_invite(self, call: Call, req: Request, now: float) -> None:
        if call.invite_tx is not None:
            self.calls.pop(call.invite_tx, None)  # the challenged INVITE (§22.2) is done with
        call.invite = req
        tx = self.layer.send_request(req, call.peer, now)
        call.invite_tx = tx
        self.calls[tx] = call
        self._pump(now)

    def _decorate(self, msg: Message, transport: str, body: bytes, *, dialog: bool) -> None:
        h = msg.headers
        if dialog and "Contact" not in h:
            h.add("Contact", f"<{self.contact(transport)}>")
        if isinstance(msg, Response):
            h.add("Server", self.user_agent)
        else:
            h.add("User-Agent", self.user_agent)
        if dialog or (isinstance(msg, Response) and msg.status in (405, 200)):
            h.add("Allow", ALLOW)
        if body:
            h.add("Content-Type", "application/sdp")
            msg.body = body

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except RemoteProtocolError as exc:
            self.stats["call_input_rejected"] += 1
            log.debug("dropped call input: %s", exc.reason)

    def _pump(self, now: float) -> None:
        while (ev := self.layer.next_event()) is not None:
            try:
                self._dispatch(ev, now)
            except SipParseError as exc:
                self.stats["bad_request"] += 1
                log.debug("bad message: %s", exc.reason)

    def _dispatch(self, ev: Event, now: float) -> None:
        if isinstance(ev, RequestReceived):
            self._on_request(ev.request, ev.source, ev.transaction, now)
            return
        tx = getattr(ev, "transaction", None)
        if isinstance(ev, InviteCancelled):
            call = self.calls.get(tx)
            if call is not None:
                self._guard(call.handle, "cancelled", now)
            return
        call = self.calls.get(tx)
        if call is not None and tx is call.invite_tx and call.direction == "out":
            if isinstance(ev, ResponseReceived):
                self._guard(call.handle, response_class(ev.response.status), now, ev.response)
            elif tx.terminated and call.state != "confirmed":
                self._guard(call.handle, "tx_timeout", now)
            return
        if call is not None and isinstance(ev, (TransactionTimeout, TransportFailed)):
            if call.state in ("incoming", "early"):
                self._guard(call.handle, "tx_timeout", now)
            return
        handler = self._handlers.get(tx)
        if handler is not None:
            if tx.terminated or isinstance(ev, ResponseReceived) and ev.response.status >= 200:
                self._handlers.pop(tx, None)
            handler(ev, now)
            return
        if isinstance(ev, ResponseReceived) and 200 <= ev.response.status < 300 \
                and ev.response.cseq[1] == "INVITE":
            # a retransmitted 2xx to our re-INVITE: our ACK was lost, send it again (§13.2.2.4)
            resp = ev.response
            call = self.dialogs.get((resp.call_id, resp.from_.tag or "", resp.to.tag or ""))
            if call is not None:
                self._guard(call.handle, "2xx", now, resp)

    def _in_dialog_result(self, call: Call, method: str, ev: Event, now: float) -> None:
        if isinstance(ev, ResponseReceived) and ev.response.status < 200:
            return
        ok = isinstance(ev, ResponseReceived) and ev.response.status < 300
        if method == "BYE":
            self._guard(call.handle, "bye_done", now)
        elif method == "INVITE":
            if ok:
                call.dialog.update_from_response(ev.response)  # type: ignore[union-attr]
            self._guard(call.handle, "reoffer_2xx" if ok else "reoffer_failed", now,
                        ev.response if ok else None)  # type: ignore[union-attr]
            status = ev.response.status if isinstance(ev, ResponseReceived) else 408
            if status in (408, 481) and call.state == "confirmed":
                # §12.2.1.2: the dialog is gone (481) or unreachable (408): end the call
                self._guard(call.handle, "hangup", now)

    def _on_request(self, req: Request, source: Peer, tx: Transaction | None, now: float) -> None:
        to_tag = req.to.tag
        if tx is None:  # ACK for a 2xx
            call = self.dialogs.get((req.call_id, to_tag or "", req.from_.tag or ""))
            if call is None:
                self.stats["stray_ack"] += 1
                return
            self._guard(call.handle, "ack", now, req)
            return
        try:
            scheme = req.uri.partition(":")[0].lower()
            if scheme not in URI_SCHEMES:
                raise RemoteProtocolError(f"unsupported URI scheme {scheme[:20]!r}", status=416)  # §8.2.2.1
            if to_tag:
                self._in_dialog(req, tx, to_tag, now)
            else:
                self._out_of_dialog(req, source, tx, now)
        except RemoteProtocolError as exc:
            self.stats["rejected_" + str(exc.status)] += 1
            self._reply(tx, exc.status, now, reason=exc.reason[:80])

    def _in_dialog(self, req: Request, tx: Transaction, to_tag: str, now: float) -> None:
        call = self.dialogs.get((req.call_id, to_tag, req.from_.tag or ""))
        if call is None or call.dialog is None:
            raise RemoteProtocolError("no such dialog", status=481)  # §12.2.2
        call.dialog.check_remote_request(req)
        method = req.method.upper()
        if method == "BYE":
            self._reply(tx, 200, now)
            call.handle("bye", now)
        elif method == "INVITE":
            call.handle("reinvite", now, tx)
        elif method == "INFO":
            self._reply(tx, 200, now)
            call.handle("info", now, req)
        elif method == "OPTIONS":
            self._reply(tx, 200, now)
        elif method in KNOWN_METHODS:
            raise RemoteProtocolError(f"{method} not allowed", status=405)
        else:
            raise RemoteProtocolError(f"{method} not implemented", status=501)

    def _out_of_dialog(self, req: Request, source: Peer, tx: Transaction, now: float) -> None:
        method = req.method.upper()
        if method == "INVITE" and not self.accepting:
            self._reply(tx, 503, now, reason="Draining", headers=(("Retry-After", "30"),))
            return
        # admission first: an unknown source learns nothing (not even 405 or 420)
        verdict = self.admission(req, source, now) if self.admission else None
        if isinstance(verdict, tuple):
            status, reason, headers = verdict
            self.stats[f"admission_{status}"] += 1
            if status:  # 0 means drop silently
                self._reply(tx, status, now, reason=reason, headers=headers)
            else:
                tx.terminate()  # keep no state and send nothing, not even 100 Trying
            return
        unsupported = [t for t in req.headers.get_all("Require") for t in t.split(",")
                       if t.strip() and t.strip() not in SUPPORTED]
        if unsupported:
            self._reply(tx, 420, now, headers=(("Unsupported", ", ".join(u.strip() for u in unsupported)),))
            return
        if method not in ("INVITE", "OPTIONS"):
            if method in ("BYE", "INFO"):
                raise RemoteProtocolError("no such dialog", status=481)
            if method in KNOWN_METHODS:
                raise RemoteProtocolError(f"{method} not allowed", status=405)
            raise RemoteProtocolError(f"{method} not implemented", status=501)
        if method == "OPTIONS":
            self._reply(tx, 200, now, headers=(("Accept", "application/sdp"),))
            return
        contacts = req.contacts
        if not contacts:
            raise RemoteProtocolError("Contact required", status=400)  # §8.1.1.8
        parse_uri(contacts[0].uri)  # §12.1.1: the remote target must be a SIP URI (416)
        call = Call(ua=self, direction="in", call_id=req.call_id, peer=tx.peer, state="incoming",
                    invite=req, invite_tx=tx, remote_sdp=req.body, started=now,
                    trunk=verdict if isinstance(verdict, str) else None)
        self.calls[tx] = call
        self.emit(IncomingCall(call, req, source))

    def _reply(self, tx: Transaction, status: int, now: float, *, reason: str | None = None,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        if tx.state not in ("trying", "proceeding"):
            return
        resp = make_response(tx.request, status, reason, to_tag=tx.to_tag, headers=headers)
        self._decorate(resp, tx.peer.transport, b"", dialog=False)
        if status == 420 or status == 405:
            resp.headers.set("Allow", ALLOW)
        try:
            self.layer.send_response(tx, resp, now)
        except LocalProtocolError:
            log.debug("could not send %s in %r", status, tx)
