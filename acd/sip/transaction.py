"""SIP transactions as table-driven state machines (RFC 3261 §17, RFC 6026).

Each transaction takes inputs (a message, a timer name, a transport error) with ``now`` and
returns nothing; what must be sent goes into the layer's outbox and what the TU must know goes
into its event queue. Timers are deadlines the layer collects. An input that a state's table
does not list raises: :class:`RemoteProtocolError` for peer input (the layer drops and counts
it), :class:`LocalProtocolError` for our own misuse.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, ClassVar

from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.events import (
    Peer,
    ResponseReceived,
    TimerConfig,
    TransactionTimeout,
    TransportFailed,
)
from acd.sip.message import Request, Response

if TYPE_CHECKING:
    from acd.sip.layer import TransactionLayer

__all__ = [
    "Transaction",
    "ClientInvite",
    "ClientNonInvite",
    "ServerInvite",
    "ServerNonInvite",
    "response_class",
]

log = logging.getLogger(__name__)

REMOTE_INPUTS = frozenset({"request", "ack", "1xx", "2xx", "3xx-6xx", "transport_error"})


def response_class(status: int) -> str:
    if status < 200:
        return "1xx"
    return "2xx" if status < 300 else "3xx-6xx"


class Transaction:
    """Common machinery: state table dispatch and named timers."""

    TABLE: ClassVar[dict[tuple[str, str], str]] = {}
    INITIAL: ClassVar[str] = ""

    def __init__(self, layer: TransactionLayer, key: tuple, request: Request, peer: Peer) -> None:
        self.layer = layer
        self.key = key
        self.request = request
        self.peer = peer
        self.state = self.INITIAL
        self.timers: dict[str, float] = {}
        self.intervals: dict[str, float] = {}
        self.last_response: Response | None = None
        self.to_tag = secrets.token_hex(6)  # the tag a UAS puts in every response (§8.2.6.2)

    @property
    def cfg(self) -> TimerConfig:
        return self.layer.timers

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    def handle(self, event: str, now: float, message: Response | Request | None = None) -> None:
        handler = self.TABLE.get((self.state, event))
        if handler is None:
            text = f"{type(self).__name__}: {event} not allowed in state {self.state}"
            if event in REMOTE_INPUTS:
                raise RemoteProtocolError(text)
            raise LocalProtocolError(text)
        getattr(self, handler)(now, message)

    def set_timer(self, name: str, now: float, interval: float) -> None:
        self.intervals[name] = interval
        self.timers[name] = now + interval
        self.layer.schedule(self, name, now + interval)

    def cancel_timers(self, *names: str) -> None:
        for name in names or tuple(self.timers):
            self.timers.pop(name, None)

    def fire(self, name: str, now: float) -> None:
        if self.timers.pop(name, None) is not None:
            self.handle("timer_" + name, now)

    def next_deadline(self) -> float | None:
        return min(self.timers.values(), default=None)

    def terminate(self, now: float = 0.0, message: object = None) -> None:
        self.state = "terminated"
        self.timers.clear()
        self.layer.forget(self)

    def _send(self, message: Request | Response) -> None:
        self.layer.transmit(message, self.peer)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.state} {self.key[0]}>"


# -- client transactions ---------------------------------------------------------------


class ClientInvite(Transaction):
    """RFC 3261 §17.1.1 (Figure 5) with the Accepted state of RFC 6026 §7.2."""

    INITIAL = "calling"
    TABLE = {
        ("calling", "start"): "_start",
        ("calling", "timer_A"): "_retransmit",
        ("calling", "timer_B"): "_timeout",
        ("calling", "1xx"): "_provisional",
        ("calling", "2xx"): "_accepted",
        ("calling", "3xx-6xx"): "_failure",
        ("calling", "transport_error"): "_transport_error",
        ("proceeding", "1xx"): "_provisional",
        ("proceeding", "2xx"): "_accepted",
        ("proceeding", "3xx-6xx"): "_failure",
        ("proceeding", "transport_error"): "_transport_error",
        ("proceeding", "timer_cancel"): "_timeout",  # §9.1: CANCEL sent, no final response
        ("completed", "3xx-6xx"): "_resend_ack",
        ("completed", "1xx"): "_absorb",
        ("completed", "timer_D"): "terminate",
        ("completed", "transport_error"): "terminate",
        ("accepted", "2xx"): "_pass_up",  # retransmitted 2xx: the TU re-sends its ACK
        ("accepted", "1xx"): "_absorb",
        ("accepted", "3xx-6xx"): "_absorb",
        ("accepted", "timer_M"): "terminate",
    }

    def __init__(self, layer: TransactionLayer, key: tuple, request: Request, peer: Peer) -> None:
        super().__init__(layer, key, request, peer)
        self.ack: Request | None = None
        self.cancel_pending = False

    def _start(self, now: float, _: object) -> None:
        self._send(self.request)
        if not self.peer.reliable:
            self.set_timer("A", now, self.cfg.t1)
        self.set_timer("B", now, 64 * self.cfg.t1)

    def _retransmit(self, now: float, _: object) -> None:
        self._send(self.request)
        self.set_timer("A", now, 2 * self.intervals["A"])

    def _timeout(self, now: float, _: object) -> None:
        self.terminate()
        self.layer.emit(TransactionTimeout(self))

    def _transport_error(self, now: float, _: object) -> None:
        self.terminate()
        self.layer.emit(TransportFailed(self))

    def _provisional(self, now: float, resp: Response) -> None:
        self.state = "proceeding"
        self.cancel_timers("A", "B")
        if self.cancel_pending:
            self.cancel_pending = False
            self.layer.send_cancel(self, now)
        self._pass_up(now, resp)

    def _accepted(self, now: float, resp: Response) -> None:
        self.state = "accepted"
        self.cancel_timers()
        self.set_timer("M", now, 64 * self.cfg.t1)
        self._pass_up(now, resp)

    def _failure(self, now: float, resp: Response) -> None:
        self.state = "completed"
        self.cancel_timers()
        self.ack = self._build_ack(resp)
        self._send(self.ack)
        self.set_timer("D", now, 0.0 if self.peer.reliable else max(32.0, 64 * self.cfg.t1))
        self._pass_up(now, resp)

    def _resend_ack(self, now: float, _: object) -> None:
        if self.ack is not None:
            self._send(self.ack)

    def _absorb(self, now: float, _: object) -> None:
        pass

    def _pass_up(self, now: float, resp: Response) -> None:
        self.last_response = resp
        self.layer.emit(ResponseReceived(resp, self))

    def _build_ack(self, resp: Response) -> Request:
        """ACK for a non-2xx final response (§17.1.1.3)."""
        req = self.request
        ack = Request(method="ACK", uri=req.uri)
        ack.headers.add("Via", req.headers.get("Via") or "")
        for route in req.headers.get_all("Route"):
            ack.headers.add("Route", route)
        ack.headers.add("From", req.headers.get("From") or "")
        ack.headers.add("To", resp.headers.get("To") or "")
        ack.headers.add("Call-ID", req.headers.get("Call-ID") or "")
        ack.headers.add("CSeq", f"{req.cseq[0]} ACK")
        ack.headers.add("Max-Forwards", "70")
        return ack


class ClientNonInvite(Transaction):
    """RFC 3261 §17.1.2 (Figure 6)."""

    INITIAL = "trying"
    TABLE = {
        ("trying", "start"): "_start",
        ("trying", "timer_E"): "_retransmit",
        ("trying", "timer_F"): "_timeout",
        ("trying", "1xx"): "_provisional",
        ("trying", "2xx"): "_final",
        ("trying", "3xx-6xx"): "_final",
        ("trying", "transport_error"): "_transport_error",
        ("proceeding", "timer_E"): "_retransmit",
        ("proceeding", "timer_F"): "_timeout",
        ("proceeding", "1xx"): "_provisional",
        ("proceeding", "2xx"): "_final",
        ("proceeding", "3xx-6xx"): "_final",
        ("proceeding", "transport_error"): "_transport_error",
        ("completed", "1xx"): "_absorb",
        ("completed", "2xx"): "_absorb",
        ("completed", "3xx-6xx"): "_absorb",
        ("completed", "timer_K"): "terminate",
    }

    _timeout = ClientInvite._timeout
    _transport_error = ClientInvite._transport_error
    _absorb = ClientInvite._absorb
    _pass_up = ClientInvite._pass_up

    def _start(self, now: float, _: object) -> None:
        self._send(self.request)
        if not self.peer.reliable:
            self.set_timer("E", now, self.cfg.t1)
        self.set_timer("F", now, 64 * self.cfg.t1)

    def _retransmit(self, now: float, _: object) -> None:
        self._send(self.request)
        step = self.cfg.t2 if self.state == "proceeding" else min(2 * self.intervals["E"], self.cfg.t2)
        self.set_timer("E", now, step)

    def _provisional(self, now: float, resp: Response) -> None:
        self.state = "proceeding"
        self._pass_up(now, resp)

    def _final(self, now: float, resp: Response) -> None:
        self.state = "completed"
        self.cancel_timers()
        self.set_timer("K", now, 0.0 if self.peer.reliable else self.cfg.t4)
        self._pass_up(now, resp)


# -- server transactions ---------------------------------------------------------------


class ServerInvite(Transaction):
    """RFC 3261 §17.2.1 (Figure 7) with the Accepted state of RFC 6026 §7.1."""

    INITIAL = "proceeding"
    TABLE = {
        ("proceeding", "request"): "_resend_last",
        ("proceeding", "send_1xx"): "_send_provisional",
        ("proceeding", "send_2xx"): "_send_accept",
        ("proceeding", "send_3xx-6xx"): "_send_failure",
        ("proceeding", "transport_error"): "_transport_error",
        ("completed", "request"): "_resend_last",
        ("completed", "timer_G"): "_retransmit_final",
        ("completed", "timer_H"): "_timeout",
        ("completed", "ack"): "_confirmed",
        ("completed", "transport_error"): "_transport_error",
        ("confirmed", "request"): "_absorb",
        ("confirmed", "ack"): "_absorb",
        ("confirmed", "timer_I"): "terminate",
        ("accepted", "request"): "_absorb",
        ("accepted", "send_2xx"): "_send_again",  # the TU's 2xx retransmissions (§13.3.1.4)
        ("accepted", "timer_L"): "terminate",
    }

    _timeout = ClientInvite._timeout
    _transport_error = ClientInvite._transport_error
    _absorb = ClientInvite._absorb

    def _resend_last(self, now: float, _: object) -> None:
        if self.last_response is not None:
            self._send(self.last_response)

    def _send_provisional(self, now: float, resp: Response) -> None:
        self.last_response = resp
        self._send(resp)

    def _send_accept(self, now: float, resp: Response) -> None:
        self.last_response = resp
        self._send(resp)
        self.state = "accepted"
        self.set_timer("L", now, 64 * self.cfg.t1)

    def _send_again(self, now: float, resp: Response) -> None:
        self._send(resp)

    def _send_failure(self, now: float, resp: Response) -> None:
        self.last_response = resp
        self._send(resp)
        self.state = "completed"
        if not self.peer.reliable:
            self.set_timer("G", now, self.cfg.t1)
        self.set_timer("H", now, 64 * self.cfg.t1)

    def _retransmit_final(self, now: float, _: object) -> None:
        self._resend_last(now, None)
        self.set_timer("G", now, min(2 * self.intervals["G"], self.cfg.t2))

    def _confirmed(self, now: float, _: object) -> None:
        self.state = "confirmed"
        self.cancel_timers()
        self.set_timer("I", now, 0.0 if self.peer.reliable else self.cfg.t4)


class ServerNonInvite(Transaction):
    """RFC 3261 §17.2.2 (Figure 8)."""

    INITIAL = "trying"
    TABLE = {
        ("trying", "request"): "_absorb",
        ("trying", "send_1xx"): "_send_provisional",
        ("trying", "send_2xx"): "_send_final",
        ("trying", "send_3xx-6xx"): "_send_final",
        ("trying", "transport_error"): "_transport_error",
        ("proceeding", "request"): "_resend_last",
        ("proceeding", "send_1xx"): "_send_provisional",
        ("proceeding", "send_2xx"): "_send_final",
        ("proceeding", "send_3xx-6xx"): "_send_final",
        ("proceeding", "transport_error"): "_transport_error",
        ("completed", "request"): "_resend_last",
        ("completed", "timer_J"): "terminate",
        ("completed", "transport_error"): "terminate",
    }

    _transport_error = ClientInvite._transport_error
    _absorb = ClientInvite._absorb
    _resend_last = ServerInvite._resend_last

    def _send_provisional(self, now: float, resp: Response) -> None:
        self.state = "proceeding"
        self.last_response = resp
        self._send(resp)

    def _send_final(self, now: float, resp: Response) -> None:
        self.state = "completed"
        self.last_response = resp
        self._send(resp)
        self.set_timer("J", now, 0.0 if self.peer.reliable else 64 * self.cfg.t1)
