"""Addresses, outputs and transaction-user events of the sans-IO SIP core (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acd.sip.message import Message, Request, Response

__all__ = [
    "Peer",
    "Transmit",
    "Event",
    "RequestReceived",
    "ResponseReceived",
    "TransactionTimeout",
    "TransportFailed",
    "InviteCancelled",
    "TimerConfig",
]

RELIABLE = frozenset({"tcp", "tls", "ws", "wss"})


@dataclass(frozen=True)
class Peer:
    """Where a message came from or goes to; ``conn`` names a stream connection (§18.2.2)."""

    transport: str
    host: str
    port: int
    conn: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / Table 4, in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


@dataclass(frozen=True)
class Transmit:
    """Bytes the adapter must send."""

    message: Message
    dest: Peer


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class RequestReceived(Event):
    """A new request. ``transaction`` is None for an ACK to a 2xx (it has no transaction)."""

    request: Request
    source: Peer
    transaction: Any


@dataclass(frozen=True)
class ResponseReceived(Event):
    response: Response
    transaction: Any


@dataclass(frozen=True)
class TransactionTimeout(Event):
    transaction: Any


@dataclass(frozen=True)
class TransportFailed(Event):
    transaction: Any


@dataclass(frozen=True)
class InviteCancelled(Event):
    """A CANCEL matched this INVITE server transaction; 487 has been sent (§9.2)."""

    transaction: Any
