"""One INVITE session (a call leg) as a table-driven state machine (RFC 3261 §13–§15).

Local inputs come from the application through :class:`acd.sip.ua.UserAgent`; remote inputs
from the transaction layer. Anything the table does not list raises: peer input becomes a
dropped-and-counted :class:`RemoteProtocolError`, our own misuse a :class:`LocalProtocolError`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from acd.sip.dialog import Dialog
from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.events import Event, Peer
from acd.sip.message import Request, Response

if TYPE_CHECKING:
    from acd.sip.ua import UserAgent

__all__ = [
    "Call",
    "IncomingCall",
    "CallProgress",
    "CallConnected",
    "CallReoffer",
    "CallEnded",
    "CallInfo",
]

log = logging.getLogger(__name__)

REMOTE = frozenset({"ack", "bye", "cancelled", "reinvite", "1xx", "2xx", "3xx-6xx",
                    "tx_timeout", "bye_done", "info"})


@dataclass(frozen=True)
class IncomingCall(Event):
    call: Call
    request: Request
    source: Peer


@dataclass(frozen=True)
class CallProgress(Event):
    call: Call
    status: int


@dataclass(frozen=True)
class CallConnected(Event):
    call: Call


@dataclass(frozen=True)
class CallReoffer(Event):
    """A re-INVITE (hold, unhold, codec change): answer with ``ua.answer_reoffer``."""

    call: Call
    offer: bytes


@dataclass(frozen=True)
class CallInfo(Event):
    """An INFO inside the call (e.g. application/dtmf-relay); 200 was sent."""

    call: Call
    content_type: str
    body: bytes


@dataclass(frozen=True)
class CallEnded(Event):
    call: Call
    cause: str  # remote-bye, local-bye, cancelled, rejected, failed, timeout, no-ack
    status: int | None = None


@dataclass(eq=False)
class Call:
    """A call leg. ``direction`` is "in" (we are UAS) or "out" (we are UAC)."""

    ua: UserAgent
    direction: str
    call_id: str
    peer: Peer
    state: str = "new"
    dialog: Dialog | None = None
    invite: Request | None = None
    invite_tx: Any = None
    reinvite_tx: Any = None
    final: Response | None = None
    local_sdp: bytes = b""
    remote_sdp: bytes = b""
    trunk: str | None = None
    started: float = 0.0
    answered_at: float | None = None
    ended_at: float | None = None
    auth_tries: int = 0
    app: dict[str, Any] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)

    TABLE: ClassVar[dict[tuple[str, str], str]] = {
        # UAS (§13.3)
        ("incoming", "ring"): "_ring",
        ("incoming", "answer"): "_answer",
        ("incoming", "reject"): "_reject",
        ("incoming", "hangup"): "_reject",
        ("incoming", "cancelled"): "_cancelled",
        ("incoming", "tx_timeout"): "_failed",
        ("early", "ring"): "_ring",
        ("early", "answer"): "_answer",
        ("early", "reject"): "_reject",
        ("early", "hangup"): "_reject",
        ("early", "cancelled"): "_cancelled",
        ("early", "tx_timeout"): "_failed",
        ("early", "bye"): "_early_bye",
        ("answered", "ack"): "_acked",
        ("answered", "timer_2xx"): "_retransmit_2xx",
        ("answered", "timer_noack"): "_no_ack",
        ("answered", "bye"): "_remote_bye",
        ("answered", "hangup"): "_bye_after_ack",
        # UAC (§13.2)
        ("calling", "1xx"): "_progress",
        ("calling", "2xx"): "_uac_connected",
        ("calling", "3xx-6xx"): "_uac_failed",
        ("calling", "tx_timeout"): "_failed",
        ("calling", "hangup"): "_cancel",
        ("cancelling", "1xx"): "_ignore",
        ("cancelling", "2xx"): "_late_2xx",
        ("cancelling", "3xx-6xx"): "_uac_cancelled",
        ("cancelling", "tx_timeout"): "_failed",
        ("cancelling", "hangup"): "_ignore",
        # both sides, confirmed dialog
        ("confirmed", "ack"): "_reinvite_acked",
        ("confirmed", "timer_re2xx"): "_retransmit_reinvite_2xx",
        ("confirmed", "2xx"): "_reack",
        ("confirmed", "bye"): "_remote_bye",
        ("confirmed", "hangup"): "_send_bye",
        ("confirmed", "reinvite"): "_reinvite",
        ("confirmed", "info"): "_info",
        ("confirmed", "reoffer_answer"): "_answer_reinvite",
        ("confirmed", "reoffer_reject"): "_reject_reinvite",
        ("confirmed", "reoffer_send"): "_send_reoffer",
        ("confirmed", "reoffer_2xx"): "_reoffer_accepted",
        ("confirmed", "reoffer_failed"): "_ignore",
        ("ending", "bye"): "_remote_bye",
        ("ending", "bye_done"): "_ended_local",
        ("ending", "2xx"): "_reack",
        ("ending", "ack"): "_ignore",
        ("ending", "hangup"): "_ignore",
        ("ending", "info"): "_info",
        ("ending", "reoffer_2xx"): "_ignore",
        ("ending", "reoffer_failed"): "_ignore",
        ("ended", "hangup"): "_ignore",
        ("ended", "ack"): "_ignore",
        ("ended", "2xx"): "_ignore",
        ("ended", "bye_done"): "_ignore",
        ("ended", "timer_2xx"): "_ignore",
        ("ended", "reoffer_2xx"): "_ignore",
        ("ended", "reoffer_failed"): "_ignore",
    }

    def handle(self, event: str, now: float, arg: Any = None) -> None:
        handler = self.TABLE.get((self.state, event))
        if handler is None:
            text = f"call {self.call_id}: {event} not allowed in state {self.state}"
            if event in REMOTE:
                raise RemoteProtocolError(text, status=500 if event == "reinvite" else 400)
            raise LocalProtocolError(text)
        getattr(self, handler)(now, arg)

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def remote_hold(self) -> bool:
        return bool(self.app.get("remote_hold"))

    # -- timers (driven by the UA) -----------------------------------------------------

    def set_timer(self, name: str, now: float, interval: float) -> None:
        self.intervals[name] = interval
        self.timers[name] = now + interval
        self.ua.schedule(self, name, now + interval)

    def fire(self, name: str, now: float) -> None:
        if self.timers.pop(name, None) is not None:
            self.handle("timer_" + name, now)

    # -- UAS handlers ------------------------------------------------------------------

    def _respond(self, status: int, now: float, *, body: bytes = b"", reason: str | None = None,
                 headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return self.ua.respond_invite(self, status, now, body=body, reason=reason, headers=headers)

    def _ring(self, now: float, arg: Any) -> None:
        self.state = "early"
        self._respond(arg or 180, now)

    def _answer(self, now: float, sdp: bytes) -> None:
        self.local_sdp = sdp
        self.state = "answered"
        self.answered_at = now
        self.final = self._respond(200, now, body=sdp)
        t1 = self.ua.timers.t1
        if not self.peer.reliable:
            self.set_timer("2xx", now, t1)  # §13.3.1.4
        self.set_timer("noack", now, 64 * t1)

    def _retransmit_2xx(self, now: float, _: Any) -> None:
        assert self.final is not None
        self.ua.layer.send_response(self.invite_tx, self.final, now) if not self.invite_tx.terminated \
            else self.ua.layer.transmit(self.final, self.invite_tx.peer)
        self.set_timer("2xx", now, min(2 * self.intervals["2xx"], self.ua.timers.t2))

    def _acked(self, now: float, ack: Request) -> None:
        self.timers.clear()
        self.state = "confirmed"
        if self.dialog is not None:
            self.dialog.move("confirm")
        if ack is not None and ack.body:
            self.remote_sdp = ack.body
        if self.app.pop("bye_after_ack", False):
            self._send_bye(now, "local-bye")  # the application hung up while we waited
            return
        self.ua.emit(CallConnected(self))

    def _no_ack(self, now: float, _: Any) -> None:
        # §13.3.1.4: no ACK within 64*T1 — confirm and end the session with BYE
        self.timers.clear()
        self.state = "confirmed"
        self._send_bye(now, "local-bye" if self.app.pop("bye_after_ack", False) else "no-ack")

    def _bye_after_ack(self, now: float, _: Any) -> None:
        # §15: the callee must not send BYE before the ACK for its 2xx (or §13.3.1.4 timeout)
        self.app["bye_after_ack"] = True

    def _early_bye(self, now: float, _: Any) -> None:
        # §15.1.2: a BYE on an early dialog; the pending INVITE gets 487
        self._respond(487, now)
        self._finish(now, "remote-bye", None)

    def _reject(self, now: float, arg: Any) -> None:
        status, reason, headers = arg if isinstance(arg, tuple) else (arg or 480, None, ())
        self._respond(status, now, reason=reason, headers=headers)
        self._finish(now, "rejected", status)

    def _cancelled(self, now: float, _: Any) -> None:
        self._finish(now, "cancelled", 487)

    def _failed(self, now: float, _: Any) -> None:
        self._finish(now, "timeout", 408)

    # -- UAC handlers ------------------------------------------------------------------

    def _progress(self, now: float, resp: Response) -> None:
        self.ua.emit(CallProgress(self, resp.status))

    def _establish(self, now: float, resp: Response) -> None:
        """The dialog from our INVITE's 2xx, and its ACK (§12.1.2, §13.2.2.4)."""
        self.dialog = Dialog.from_uac(self.invite, resp, self.peer)  # type: ignore[arg-type]
        self.dialog.move("confirm")
        self.ua.register_dialog(self)
        self._reack(now, resp)

    def _uac_connected(self, now: float, resp: Response) -> None:
        self.state = "confirmed"
        self.answered_at = now
        self.remote_sdp = resp.body
        self._establish(now, resp)
        self.ua.emit(CallConnected(self))

    def _reack(self, now: float, resp: Response) -> None:
        if self.dialog is None or resp.cseq[1] != "INVITE":
            return
        if (resp.to.tag or "") != self.dialog.remote_tag and self.invite is not None:
            # §13.2.2.4: a 2xx from another fork — ACK it, and BYE that dialog once
            fork = Dialog.from_uac(self.invite, resp, self.peer)
            self.ua.layer.send_stateless(fork.create_ack(resp.cseq[0]), self.peer)
            forks = self.app.setdefault("forks", set())
            if fork.remote_tag not in forks:
                forks.add(fork.remote_tag)
                self.ua.layer.send_request(fork.create_request("BYE"), self.peer, now)
            return
        self.ua.send_ack(self, resp.cseq[0])

    def _uac_failed(self, now: float, resp: Response) -> None:
        if resp.status in (401, 407) and self.ua.retry_with_auth(self, resp, now):
            return
        self._finish(now, "rejected", resp.status)

    def _cancel(self, now: float, _: Any) -> None:
        self.state = "cancelling"
        self.ua.layer.send_cancel(self.invite_tx, now)

    def _late_2xx(self, now: float, resp: Response) -> None:
        # §15: a 2xx that crossed our CANCEL: ACK it, then BYE (the app already hung up)
        self.state = "confirmed"
        self._establish(now, resp)
        self._send_bye(now, "cancelled")

    def _uac_cancelled(self, now: float, resp: Response) -> None:
        self._finish(now, "cancelled", resp.status)

    # -- confirmed dialog ----------------------------------------------------------------

    def _remote_bye(self, now: float, _: Any) -> None:
        self._finish(now, "remote-bye", None)

    def _send_bye(self, now: float, cause: Any) -> None:
        self.timers.clear()
        self._close_pending(now)
        self.state = "ending"
        self.app["end_cause"] = cause if isinstance(cause, str) else "local-bye"
        self.ua.send_in_dialog(self, "BYE", now)

    def _ended_local(self, now: float, _: Any) -> None:
        self._finish(now, self.app.get("end_cause", "local-bye"), None)

    def _reoffer_pending(self) -> bool:
        tx = self.app.get("reoffer_tx")
        return tx is not None and tx.state in ("calling", "proceeding")

    def _close_pending(self, now: float) -> None:
        # §15.1.2: a pending re-INVITE from the peer still gets an answer (487);
        # our own pending re-INVITE is CANCELled (§9.1) so its transaction can end
        if self.reinvite_tx is not None:
            tx = self._pending_reinvite()
            if tx.state == "proceeding":
                self.ua.respond_in_dialog(self, tx, 487, now)
        tx = self.app.pop("reoffer_tx", None)
        if tx is not None and tx.state in ("calling", "proceeding"):
            self.ua.layer.send_cancel(tx, now)

    def _reinvite(self, now: float, tx: Any) -> None:
        if self.reinvite_tx is not None:
            # §14.2: theirs still pending — 500 with a random Retry-After of 0..10 s
            self.ua.layer.respond(tx, 500, now=now, to_tag=self.dialog.local_tag,
                                  headers=(("Retry-After", str(secrets.randbelow(11))),))
            return
        if self._reoffer_pending():
            self.ua.layer.respond(tx, 491, now=now, to_tag=self.dialog.local_tag)  # §14.2 glare
            return
        self.reinvite_tx = tx
        self.ua.emit(CallReoffer(self, tx.request.body))

    def _pending_reinvite(self) -> Any:
        tx, self.reinvite_tx = self.reinvite_tx, None
        if tx is None:
            raise LocalProtocolError(f"call {self.call_id}: no re-INVITE to answer")
        return tx

    def _answer_reinvite(self, now: float, sdp: bytes) -> None:
        tx = self._pending_reinvite()
        self.local_sdp = sdp
        self.remote_sdp = tx.request.body
        resp = self.ua.respond_in_dialog(self, tx, 200, now, body=sdp)
        if not self.peer.reliable:
            # §13.3.1.4: the TU retransmits the 2xx to any INVITE until the ACK comes
            self.app["reinvite_2xx"] = (tx, resp)
            self.set_timer("re2xx", now, self.ua.timers.t1)

    def _retransmit_reinvite_2xx(self, now: float, _: Any) -> None:
        tx, resp = self.app["reinvite_2xx"]
        if tx.terminated:  # Timer L: 64*T1 without an ACK, give up
            del self.app["reinvite_2xx"]
            return
        self.ua.layer.send_response(tx, resp, now)
        self.set_timer("re2xx", now, min(2 * self.intervals["re2xx"], self.ua.timers.t2))

    def _reinvite_acked(self, now: float, ack: Request | None) -> None:
        pending = self.app.get("reinvite_2xx")
        if ack is None or pending is None or ack.cseq[0] != pending[0].request.cseq[0]:
            return  # a retransmitted ACK for an earlier 2xx
        del self.app["reinvite_2xx"]
        self.timers.pop("re2xx", None)
        if ack.body:
            self.remote_sdp = ack.body  # the answer to an offer in our 2xx

    def _reject_reinvite(self, now: float, status: int) -> None:
        tx = self._pending_reinvite()
        self.ua.respond_in_dialog(self, tx, status or 488, now)

    def _send_reoffer(self, now: float, sdp: bytes) -> None:
        if self.reinvite_tx is not None or self._reoffer_pending():
            raise LocalProtocolError(f"call {self.call_id}: an INVITE is already in progress (§14.1)")
        self.local_sdp = sdp
        self.app["reoffer_tx"] = self.ua.send_in_dialog(self, "INVITE", now, body=sdp)

    def _reoffer_accepted(self, now: float, resp: Response) -> None:
        self.remote_sdp = resp.body
        self._reack(now, resp)

    def _info(self, now: float, req: Request) -> None:
        self.ua.emit(CallInfo(self, req.headers.get("Content-Type") or "", req.body))

    def _ignore(self, now: float, _: Any) -> None:
        pass

    def _finish(self, now: float, cause: str, status: int | None) -> None:
        self.timers.clear()
        self._close_pending(now)
        self.state = "ended"
        self.ended_at = now
        if self.dialog is not None:
            self.dialog.move("terminate")
        self.ua.forget_call(self)
        self.ua.emit(CallEnded(self, cause, status))
