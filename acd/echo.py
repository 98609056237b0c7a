"""RTP port allocation and the echo-test media: every RTP packet goes back where it came from.

This is the minimal media of the foundation; the media engine (``media/``) replaces it.
Symmetric RTP (RFC 4961): we answer to the source address actually seen, but only from the
signalled IP unless NAT mode is on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter


__all__ = ["EchoStream"]

log = logging.getLogger(__name__)


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, stream: EchoStream) -> None:
        self.stream = stream
        self.sock: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        s = self.stream
        if len(data) < 12 or data[0] >> 6 != 2:
            s.stats["malformed"] += 1  # not RTP version 2 (RFC 3550 §5.1)
            return
        if not s.nat and addr[0] != s.remote_ip:
            s.stats["wrong_source"] += 1
            return
        s.stats["packets"] += 1
        if s.paused:
            return
        assert self.sock is not None
        self.sock.sendto(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        self.stream.stats["errors"] += 1


class EchoStream:
    """One RTP socket that reflects the caller's audio."""

    def __init__(self, address: str, port: int, remote_ip: str, *, nat: bool = False) -> None:
        self.address = address
        self.port = port
        self.remote_ip = remote_ip
        self.nat = nat
        self.paused = False  # on hold: keep receiving, send nothing
        self.stats: Counter[str] = Counter()
        self._proto: _Echo | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._proto = await loop.create_datagram_endpoint(
            lambda: _Echo(self), local_addr=(self.address, self.port))

    def close(self) -> None:
        if self._proto is not None and self._proto.sock is not None:
            self._proto.sock.close()
        log.debug("echo stream %d closed: %s", self.port, dict(self.stats))
