"""SIP dialogs (RFC 3261 §12): identifiers, CSeq rules, route sets and in-dialog requests."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from acd.sip.errors import LocalProtocolError, RemoteProtocolError
from acd.sip.events import Peer
from acd.sip.message import Request, Response
from acd.sip.uri import NameAddr, parse_name_addr, parse_uri

__all__ = ["Dialog", "DialogId", "new_tag", "new_call_id"]

log = logging.getLogger(__name__)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


@dataclass(frozen=True)
class DialogId:
    """§12: Call-ID, local tag, remote tag."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass
class Dialog:
    """Dialog state (§12.1). ``state`` follows the table below; other moves raise."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: str = "early"
    peer: Peer | None = None

    TRANSITIONS = {
        ("early", "confirm"): "confirmed",
        ("early", "terminate"): "terminated",
        ("confirmed", "confirm"): "confirmed",
        ("confirmed", "terminate"): "terminated",
        ("terminated", "terminate"): "terminated",
    }

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    def move(self, event: str) -> None:
        new = self.TRANSITIONS.get((self.state, event))
        if new is None:
            raise LocalProtocolError(f"dialog: {event} not allowed in state {self.state}")
        self.state = new

    # -- creation ----------------------------------------------------------------------

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, peer: Peer) -> Dialog:
        """§12.1.1: the UAS side, from the dialog-creating request."""
        contacts = request.contacts
        if not contacts:
            raise RemoteProtocolError("INVITE without Contact")
        parse_uri(contacts[0].uri)  # §12.1.1 remote target must be a SIP URI (416 otherwise)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=request.to,
            remote_uri=request.from_,
            remote_target=contacts[0].uri,
            route_set=list(request.headers.get_all("Record-Route")),
            remote_seq=request.cseq[0],
            secure=request.uri.lower().startswith("sips:"),
            peer=peer,
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response, peer: Peer) -> Dialog:
        """§12.1.2: the UAC side, from our request and a 1xx/2xx with a To tag."""
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.uri
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=request.from_,
            remote_uri=response.to,
            remote_target=target,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_seq=request.cseq[0],
            secure=request.uri.lower().startswith("sips:"),
            peer=peer,
        )

    # -- requests ----------------------------------------------------------------------

    def create_request(self, method: str, *, contact: str | None = None, body: bytes = b"",
                       content_type: str | None = None) -> Request:
        """§12.2.1.1: Request-URI, Route, tags and CSeq from the dialog state."""
        if method == "ACK":
            raise LocalProtocolError("use create_ack for ACK")
        self.local_seq += 1
        return self._build(method, self.local_seq, contact, body, content_type)

    def create_ack(self, cseq: int, *, body: bytes = b"", content_type: str | None = None) -> Request:
        """ACK for a 2xx (§13.2.2.4): same CSeq number as the INVITE."""
        return self._build("ACK", cseq, None, body, content_type)

    def _build(self, method: str, seq: int, contact: str | None, body: bytes,
               content_type: str | None) -> Request:
        uri = self.remote_target
        routes = list(self.route_set)
        if routes:
            first = parse_name_addr(routes[0])
            if "lr" not in parse_uri(first.uri).params:
                # strict router (§12.2.1.1): its URI becomes the Request-URI
                uri = first.uri
                routes = routes[1:] + [f"<{self.remote_target}>"]
        req = Request(method=method, uri=uri)
        h = req.headers
        for route in routes:
            h.add("Route", route)
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local_uri.with_tag(self.local_tag)))
        h.add("To", str(self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        if contact:
            h.add("Contact", contact)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        req.body = body
        return req

    def check_remote_request(self, request: Request) -> None:
        """§12.2.2: CSeq must rise (500 otherwise); a target refresh updates the target."""
        seq, method = request.cseq
        if method == "ACK":
            return
        if self.remote_seq is not None and seq <= self.remote_seq:
            if method != "CANCEL":
                raise RemoteProtocolError(f"CSeq {seq} not above {self.remote_seq}", status=500)
        self.remote_seq = seq
        if method in ("INVITE", "UPDATE"):
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri

    def update_from_response(self, response: Response) -> None:
        """Target refresh from a 2xx to our re-INVITE (§12.2.1.2)."""
        contacts = response.contacts
        if contacts and 200 <= response.status < 300:
            self.remote_target = contacts[0].uri
