"""The asyncio side of media: RTP/RTCP socket pairs from a port range, symmetric-RTP latching,
and one shared 20 ms media clock for every stream of the process.

Packets are parsed here and handed to sans-IO stream objects; malformed packets and packets
from unexpected addresses are dropped and counted, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from media.errors import MalformedPacket, MediaError
from media.rtp import RtpPacket, parse

__all__ = ["PortPool", "RtpEndpoint", "MediaClock", "bind_udp"]

log = logging.getLogger(__name__)


class PortPool:
    """Even RTP ports from a configured range; RTCP uses port + 1 (RFC 3550 §11)."""

    def __init__(self, port_min: int, port_max: int) -> None:
        first = port_min + (port_min % 2)
        self.free = list(range(first, port_max, 2))
        random.shuffle(self.free)
        self.used: set[int] = set()

    def take(self) -> int:
        if not self.free:
            raise MediaError("RTP port range exhausted")
        port = self.free.pop()
        self.used.add(port)
        return port

    def give_back(self, port: int) -> None:
        if port in self.used:
            self.used.discard(port)
            self.free.insert(0, port)


def bind_udp(address: str, port: int) -> socket.socket:
    """A bound non-blocking UDP socket; IPv6 ones are IPv6-only (as asyncio makes its TCP
    listeners), so ``0.0.0.0`` and ``::`` can share a port."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_data: Callable[[bytes, tuple[Any, ...]], None]) -> None:
        self.on_data = on_data
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.on_data(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("media socket error: %s", exc)


class RtpEndpoint:
    """An RTP socket and its RTCP socket, with symmetric RTP (RFC 4961).

    We send to the address packets actually come from ("latching"), accepting them only from
    the signalled IP unless ``nat`` is set, in which case any source may latch once; before
    anything arrives we send to the signalled address."""

    def __init__(self, address: str, port: int, *, nat: bool = False,
                 on_rtp: Callable[[RtpPacket, float], None] | None = None,
                 on_rtcp: Callable[[bytes, float], None] | None = None) -> None:
        self.address = address
        self.port = port
        self.nat = nat
        self.on_rtp = on_rtp
        self.on_rtcp = on_rtcp
        self.remote: tuple[str, int] | None = None  # signalled (from SDP)
        self.remote_rtcp: tuple[str, int] | None = None
        self.latched: tuple[str, int] | None = None
        self.latched_rtcp: tuple[str, int] | None = None
        self.stats: Counter[str] = Counter()
        self._rtp: _Socket | None = None
        self._rtcp: _Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        rtp_sock = bind_udp(self.address, self.port)
        try:
            rtcp_sock = bind_udp(self.address, self.port + 1)
        except OSError:
            rtp_sock.close()
            raise
        _, self._rtp = await self._loop.create_datagram_endpoint(lambda: _Socket(self._on_rtp), sock=rtp_sock)
        _, self._rtcp = await self._loop.create_datagram_endpoint(lambda: _Socket(self._on_rtcp), sock=rtcp_sock)

    def set_remote(self, host: str, port: int, rtcp: tuple[str, int] | None = None) -> None:
        """The address from SDP (re-INVITEs may change it: latching starts again)."""
        if self.remote != (host, port):
            self.latched = self.latched_rtcp = None
        self.remote = (host, port)
        self.remote_rtcp = rtcp or (host, port + 1)

    def _accept(self, source: tuple[str, int], latched: tuple[str, int] | None) -> bool:
        """Strict: only the signalled IP (its port may differ, NAT on their side). NAT mode:
        the first source latches and is then the only one accepted (no RTP hijacking)."""
        if self.nat:
            return latched is None or latched == source
        return self.remote is not None and source[0] == self.remote[0]

    def _on_rtp(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = (addr[0], addr[1])
        if not self._accept(source, self.latched):
            self.stats["wrong_source"] += 1
            return
        try:
            packet = parse(data)
        except MalformedPacket:
            self.stats["malformed_rtp"] += 1
            return
        if self.latched != source:
            self.stats["latched"] += 1
            self.latched = source
        self.stats["rtp_in"] += 1
        if self.on_rtp is not None:
            assert self._loop is not None
            self.on_rtp(packet, self._loop.time())

    def _on_rtcp(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = (addr[0], addr[1])
        if not self._accept(source, self.latched_rtcp):
            self.stats["wrong_source_rtcp"] += 1
            return
        if len(data) < 8 or data[0] >> 6 != 2:
            self.stats["malformed_rtcp"] += 1
            return
        self.latched_rtcp = source
        self.stats["rtcp_in"] += 1
        if self.on_rtcp is not None:
            assert self._loop is not None
            self.on_rtcp(data, self._loop.time())

    def send_rtp(self, data: bytes) -> None:
        dest = self.latched or self.remote
        if dest is None or self._rtp is None or self._rtp.transport is None:
            self.stats["rtp_unsendable"] += 1
            return
        self._rtp.transport.sendto(data, dest)
        self.stats["rtp_out"] += 1

    def send_rtcp(self, data: bytes) -> None:
        dest = self.latched_rtcp or self.remote_rtcp
        if dest is None or self._rtcp is None or self._rtcp.transport is None:
            return
        self._rtcp.transport.sendto(data, dest)
        self.stats["rtcp_out"] += 1

    def close(self) -> None:
        for sock in (self._rtp, self._rtcp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()


class MediaClock:
    """One timer for all streams: every ``period`` seconds each registered callback runs with
    its tick's scheduled time. Deadlines are absolute (start + k·slot) so the clock does not
    drift; a tick that runs late is counted, and missed ticks are run at once to catch up.

    The period is split into ``slots`` phases. A callback starts at phase 0; :meth:`shift`
    moves it by whole slots, so a leg can tick just after its packets arrive (the echo test
    follows its caller's phase: :class:`acd.media_session.CallMedia`). The timer wakes only
    at phases that have callbacks, so with every leg at phase 0 it is one wake-up per period.
    """

    def __init__(self, period: float = 0.02, slots: int = 8) -> None:
        if period <= 0 or not 1 <= slots <= 64:
            raise ValueError("need period > 0 and 1 <= slots <= 64")
        self.period, self.slots = period, slots
        self.slot_s = period / slots
        self.callbacks: dict[int, Callable[[float], None]] = {}
        self.stats: Counter[str] = Counter()
        self._ids = 0
        self._due: dict[int, int] = {}  # token -> slot index of its next tick
        self._buckets: dict[int, dict[int, None]] = {}  # slot index -> tokens due then
        self._done = -1  # the last slot index run
        self._counted = -1  # the last period counted in stats["ticks"]
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, callback: Callable[[float], None]) -> int:
        self._ids += 1
        token = self._ids
        self.callbacks[token] = callback
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._start = self._loop.time()
        now_index = int((self._loop.time() - self._start) // self.slot_s)
        first = (max(now_index, self._done) // self.slots + 1) * self.slots  # the next phase-0 tick
        self._put(token, first)
        self._arm()
        return token

    def remove(self, token: int) -> None:
        if self.callbacks.pop(token, None) is None:
            return
        index = self._due.pop(token)
        bucket = self._buckets.get(index)
        if bucket is not None:
            bucket.pop(token, None)
            if not bucket:
                del self._buckets[index]
        self._arm()

    def next_tick(self, token: int) -> float:
        """When the callback runs next (loop time)."""
        return self._start + self._due[token] * self.slot_s

    def phase(self, token: int) -> int:
        """The callback's phase: its slot within the period (0 … slots−1)."""
        return self._due[token] % self.slots

    def shift(self, token: int, slots: int) -> int:
        """Move a callback's ticks ``slots`` slots later (negative: earlier), at most a period
        less one slot either way; its next tick is never before now. Returns the new phase."""
        if token not in self._due or slots == 0:
            return self.phase(token) if token in self._due else 0
        slots = max(-(self.slots - 1), min(self.slots - 1, slots))
        old = self._due.pop(token)
        bucket = self._buckets.get(old)  # None: its tick is running now
        if bucket is not None:
            bucket.pop(token, None)
            if not bucket:
                del self._buckets[old]
        self._put(token, max(old + slots, self._done + 1))
        self.stats["phase_shifts"] += 1
        self._arm()
        return self.phase(token)

    def _put(self, token: int, index: int) -> None:
        self._due[token] = index
        self._buckets.setdefault(index, {})[token] = None

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._buckets and self._loop is not None:
            self._handle = self._loop.call_at(self._start + min(self._buckets) * self.slot_s, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._handle = None
        now = self._loop.time()
        first = min(self._buckets, default=None)
        if first is None:
            return
        late = now - (self._start + first * self.slot_s)
        if late > self.period:
            self.stats["late_ticks"] += 1
        if late > 5 * self.period:  # a long stall: don't replay it all, resync instead
            self.stats["resync"] += 1
            skip = int(late // self.period) * self.slots
            self._buckets = {i + skip: b for i, b in self._buckets.items()}
            self._due = {t: i + skip for t, i in self._due.items()}
        last = int((now - self._start) // self.slot_s + 1e-9)
        while self._buckets:
            index = min(self._buckets)
            if index > last:
                break
            tokens = self._buckets.pop(index)
            self._done = index
            tick = self._start + index * self.slot_s
            for token in tokens:
                callback = self.callbacks.get(token)
                if callback is None or self._due.get(token) != index:
                    continue
                self._put(token, index + self.slots)
                try:
                    callback(tick)
                except MediaError as exc:
                    self.stats["callback_error"] += 1
                    log.warning("media tick error: %s", exc)
            if index // self.slots != self._counted:  # one per period, whatever the phases in use
                self._counted = index // self.slots
                self.stats["ticks"] += 1
        self._arm()
