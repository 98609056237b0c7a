"""Virtual-time helpers for the sans-IO SIP core tests: a driver and a scripted peer.

No sleeping and no wall clock: the driver moves ``now`` to the core's ``get_timer()`` and
calls ``handle_timer(now)``; every transmission is recorded with the virtual time it left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acd.sip.events import Event, Peer
from acd.sip.message import Message, Request, Response, parse_message

__all__ = [
    "ME",
    "UDP",
    "TCP",
    "Driver",
    "Sent",
    "build_request",
    "build_response",
    "request",
    "response",
    "sent_by",
    "contact",
]

ME = ("10.0.0.1", 5060)  # our advertised sent-by
UDP = Peer("udp", "192.0.2.10", 5060)
TCP = Peer("tcp", "192.0.2.10", 40123, conn=7)


def sent_by(transport: str) -> tuple[str, int]:
    return ME


def contact(transport: str) -> str:
    return f"sip:homeline@{ME[0]}:{ME[1]}"


@dataclass
class Sent:
    at: float
    message: Message
    dest: Peer

    @property
    def status(self) -> int | None:
        return self.message.status if isinstance(self.message, Response) else None

    @property
    def method(self) -> str | None:
        return self.message.method if isinstance(self.message, Request) else None

    def wire(self) -> Message:
        """The message as the peer would parse it from the wire."""
        return parse_message(self.message.to_bytes())


@dataclass
class Driver:
    """Drives a TransactionLayer or a UserAgent on virtual time."""

    core: Any
    now: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def drain(self) -> list[Sent]:
        new = [Sent(self.now, t.message, t.dest) for t in self.core.transmissions()]
        self.sent.extend(new)
        while (ev := self.core.next_event()) is not None:
            self.events.append(ev)
        return new

    def receive(self, msg: Message | bytes, source: Peer) -> list[Sent]:
        if isinstance(msg, bytes):
            msg = parse_message(msg)
        self.drain()  # what the test queued before now leaves at now
        self.core.receive(msg, source, self.now)
        return self.drain()

    def advance(self, until: float) -> list[Sent]:
        """Fire every timer due up to ``until`` in order, then set ``now = until``."""
        out = self.drain()
        while (deadline := self.core.get_timer()) is not None and deadline <= until:
            assert deadline >= self.now, f"timer in the past: {deadline} < {self.now}"
            self.now = deadline
            self.core.handle_timer(deadline)
            out += self.drain()
            after = self.core.get_timer()
            assert after is None or after >= self.now, f"timer in the past after firing: {after}"
        self.now = max(self.now, until)
        return out

    def run_out(self, limit: float = 10_000.0) -> list[Sent]:
        """Fire every timer until none is left (bounded to catch endless timers)."""
        out: list[Sent] = []
        while (deadline := self.core.get_timer()) is not None:
            assert deadline <= limit, f"timers still armed at {deadline}"
            out += self.advance(deadline)
        return out

    def times(self, pred: Any = None, since: int = 0) -> list[float]:
        return [s.at for s in self.sent[since:] if pred is None or pred(s)]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def take_events(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    def take_sent(self) -> list[Sent]:
        out, self.sent = self.sent, []
        return out


def request(raw: bytes) -> Request:
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def response(raw: bytes) -> Response:
    msg = parse_message(raw)
    assert isinstance(msg, Response)
    return msg


def _lines(first: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    text = first + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    text += f"Content-Length: {len(body)}\r\n\r\n"
    return text.encode() + body


def build_request(
    method: str,
    uri: str = "sip:service@10.0.0.1",
    *,
    branch: str | None = "z9hG4bK-peer-1",
    via_host: str = "192.0.2.10",
    via_port: int | None = 5060,
    transport: str = "UDP",
    rport: bool = False,
    from_tag: str | None = "peer-tag",
    to_tag: str | None = None,
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    cseq_method: str | None = None,
    contact_uri: str | None = "sip:peer@192.0.2.10:5060",
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    vias: tuple[str, ...] = (),
) -> bytes:
    """A request as the scripted peer would put it on the wire."""
    port = f":{via_port}" if via_port is not None else ""
    params = (f";branch={branch}" if branch else "") + (";rport" if rport else "")
    headers = [("Via", f"SIP/2.0/{transport} {via_host}{port}{params}")]
    headers += [("Via", v) for v in vias]
    headers.append(("Max-Forwards", "70"))
    headers.append(("From", "<sip:peer@192.0.2.10>" + (f";tag={from_tag}" if from_tag else "")))
    headers.append(("To", "<sip:service@10.0.0.1>" + (f";tag={to_tag}" if to_tag else "")))
    headers.append(("Call-ID", call_id))
    headers.append(("CSeq", f"{cseq} {cseq_method or method}"))
    if contact_uri and method in ("INVITE", "SUBSCRIBE", "REFER", "UPDATE"):
        headers.append(("Contact", f"<{contact_uri}>"))
    headers += list(extra)
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return _lines(f"{method} {uri} SIP/2.0", headers, body)


def build_response(
    req: Message,
    status: int,
    reason: str = "Whatever",
    *,
    to_tag: str | None = None,
    contact_uri: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    record_route: tuple[str, ...] = (),
) -> bytes:
    """The peer's response to one of our requests, copying Via/From/To/Call-ID/CSeq (§8.2.6.2)."""
    h = req.headers
    headers = [("Via", v) for v in h.get_all("Via")]
    headers += [("Record-Route", rr) for rr in record_route]
    headers.append(("From", h.get("From") or ""))
    to = h.get("To") or ""
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    headers.append(("To", to))
    headers.append(("Call-ID", h.get("Call-ID") or ""))
    headers.append(("CSeq", h.get("CSeq") or ""))
    if contact_uri:
        headers.append(("Contact", f"<{contact_uri}>"))
    headers += list(extra)
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return _lines(f"SIP/2.0 {status} {reason}", headers, body)
