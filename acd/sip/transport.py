"""The thin asyncio adapter: sockets (UDP, TCP, TLS; IPv4 and IPv6) around the sans-IO core.

It parses bytes, feeds the :class:`UserAgent`, sends what it returns, hands events to the
application and re-arms one timer. Malformed input is answered with 400 when it can be
(§21.4.1) or dropped and counted; nothing raised by a peer's bytes escapes a socket callback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from acd.sip.errors import SipError, SipParseError
from acd.sip.events import Event, Peer
from acd.sip.layer import response_destination
from acd.sip.message import Message, Request, StreamParser, make_response, parse_message
from media.transport import bind_udp

__all__ = ["SipTransport", "Listener", "TimerSource"]

log = logging.getLogger(__name__)


class TimerSource(Protocol):
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


@dataclass(frozen=True)
class Listener:
    transport: str  # udp | tcp | tls
    address: str
    port: int


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport, listener: Listener) -> None:
        self.owner = owner
        self.listener = listener
        self.sock: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner.on_bytes(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.owner.stats["udp_error"] += 1
        log.debug("UDP error on %s: %s", self.listener, exc)


class _Stream(asyncio.Protocol):
    def __init__(self, owner: SipTransport, kind: str) -> None:
        self.owner = owner
        self.kind = kind
        self.conn_id = next(owner._conn_ids)
        self.parser = StreamParser(max_body=owner.max_message_bytes)
        self.peer: Peer | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self.kind, host, port, self.conn_id)
        self.owner._conns[self.conn_id] = self
        self.owner._by_addr[(self.kind, host, port)] = self
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        for item in self.parser.feed(data):
            if item == b"pong":
                self.write(b"\r\n")  # RFC 5626 §4.4.1
            elif isinstance(item, SipParseError):
                self.owner.on_bad(item, self.peer)
            else:
                self.owner.on_message(item, self.peer)  # type: ignore[arg-type]
        if self.parser.broken and self.transport is not None:
            self.owner.stats["stream_framing_error"] += 1
            self.transport.close()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._conns.pop(self.conn_id, None)
        if self.peer is not None:
            key = (self.kind, self.peer.host, self.peer.port)
            if self.owner._by_addr.get(key) is self:
                del self.owner._by_addr[key]
            self.owner.on_transport_error(self.peer)


class SipTransport:
    """All SIP sockets of one server, bound to one :class:`UserAgent`."""

    def __init__(
        self,
        ua: Any,
        listeners: list[Listener],
        on_event: Callable[[Event], None],
        *,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        max_message_bytes: int = 65535,
        extra_timers: tuple[TimerSource, ...] = (),
    ) -> None:
        self.ua = ua
        self.listeners = listeners
        self.on_event = on_event
        self.ssl_server = ssl_server
        self.ssl_client = ssl_client
        self.max_message_bytes = max_message_bytes
        self.timer_sources: list[TimerSource] = [ua, *extra_timers]
        self.stats: Counter[str] = Counter()
        self._udp: dict[int, _Udp] = {}  # address family → socket used for sending
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: dict[int, _Stream] = {}
        self._by_addr: dict[tuple[str, str, int], _Stream] = {}
        self._conn_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for lst in self.listeners:
            if lst.transport == "udp":
                _, proto = await self._loop.create_datagram_endpoint(
                    lambda lst=lst: _Udp(self, lst), sock=bind_udp(lst.address, lst.port))
                family = 6 if ":" in lst.address else 4
                self._udp.setdefault(family, proto)
            else:
                ctx = self.ssl_server if lst.transport == "tls" else None
                if lst.transport == "tls" and ctx is None:
                    raise SipError(f"TLS listener {lst.address}:{lst.port} has no certificate")
                server = await self._loop.create_server(
                    lambda kind=lst.transport: _Stream(self, kind), lst.address, lst.port, ssl=ctx)
                self._servers.append(server)
            log.info("SIP listening on %s %s:%d", lst.transport, lst.address, lst.port)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for proto in self._udp.values():
            if proto.sock is not None:
                proto.sock.close()
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            await server.wait_closed()

    # -- input ---------------------------------------------------------------------------

    def on_bytes(self, data: bytes, peer: Peer) -> None:
        if not data.strip(b"\r\n\x00 "):
            self.stats["keepalive"] += 1  # RFC 5626 CRLF keep-alive on UDP
            return
        if len(data) > self.max_message_bytes:
            self.stats["dropped_oversize"] += 1
            return
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self.on_bad(exc, peer)
            return
        self.on_message(msg, peer)

    def on_message(self, msg: Message, peer: Peer) -> None:
        try:
            self.ua.receive(msg, peer, self.now)
        except SipParseError as exc:
            self.on_bad(exc, peer)
        except SipError as exc:
            self.stats["dropped_error"] += 1
            log.warning("dropped %r from %s: %s", msg, peer, exc)
        self.flush()

    def on_bad(self, exc: SipParseError, peer: Peer) -> None:
        """Answer a malformed request with its fault as the reason phrase, else drop it."""
        partial = exc.partial
        if isinstance(partial, Request) and partial.method != "ACK":
            try:
                resp = make_response(partial, exc.status, exc.reason[:100].replace("\r", " ").replace("\n", " "))
                self.send(resp, response_destination(resp, peer))
                self.stats[f"answered_{exc.status}"] += 1
                log.info("answered %d to malformed %s from %s: %s", exc.status, partial.method, peer, exc.reason)
                return
            except SipParseError:
                pass  # not enough of a message to answer
        self.stats["dropped_malformed"] += 1
        log.debug("dropped malformed message from %s: %s", peer, exc.reason)

    def on_transport_error(self, peer: Peer) -> None:
        self.ua.transport_error(peer, self.now)
        self.flush()

    # -- output ----------------------------------------------------------------------------

    def send(self, msg: Message, dest: Peer) -> None:
        data = msg.to_bytes()
        if dest.transport == "udp":
            proto = self._udp.get(6 if ":" in dest.host else 4)
            if proto is None or proto.sock is None:
                self.stats["no_socket"] += 1
                log.warning("no UDP socket for %s", dest)
                return
            proto.sock.sendto(data, (dest.host, dest.port))
            return
        conn = self._conns.get(dest.conn) if dest.conn else None
        if conn is None:
            conn = self._by_addr.get((dest.transport, dest.host, dest.port))
        if conn is None:
            conn = self._connect(dest)
        conn.write(data)

    def _connect(self, dest: Peer) -> _Stream:
        assert self._loop is not None
        proto = _Stream(self, dest.transport)
        ctx = self.ssl_client if dest.transport == "tls" else None

        async def connect() -> None:
            try:
                await self._loop.create_connection(lambda: proto, dest.host, dest.port, ssl=ctx)  # type: ignore[union-attr]
            except (OSError, ssl.SSLError) as exc:
                log.warning("cannot connect to %s: %s", dest, exc)
                self.on_transport_error(dest)

        self._loop.create_task(connect())
        return proto

    def flush(self) -> None:
        """Send what the core produced, give its events to the application, re-arm the timer."""
        for _ in range(1000):
            out = self.ua.transmissions()
            for item in out:
                try:
                    self.send(item.message, item.dest)
                except OSError as exc:
                    self.stats["send_error"] += 1
                    log.warning("send to %s failed: %s", item.dest, exc)
                    if item.dest.reliable:  # a UDP error is left to the retransmission timers
                        self.ua.transport_error(item.dest, self.now)
            ev = self.ua.next_event()
            if ev is not None:
                try:
                    self.on_event(ev)
                except SipError as exc:
                    log.warning("application error on %r: %s", ev, exc)
            if not out and ev is None:
                break
        self._rearm()

    def _rearm(self) -> None:
        deadlines = [d for s in self.timer_sources if (d := s.get_timer()) is not None]
        deadline = min(deadlines) if deadlines else None
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.now
        for source in self.timer_sources:
            source.handle_timer(now)
        self.flush()
