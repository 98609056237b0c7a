"""SIP errors. A remote peer's fault is kept apart from our own (as h11 does)."""

from __future__ import annotations

from acd.errors import AcdError

__all__ = ["SipError", "RemoteProtocolError", "LocalProtocolError", "SipParseError"]


class SipError(AcdError):
    """Base of the SIP stack's errors."""


class RemoteProtocolError(SipError):
    """The peer sent something invalid. ``status`` is what a UAS answers (RFC 3261 §21)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        self.reason = reason
        self.status = status
        self.partial: object | None = None  # the message parsed so far, if any
        super().__init__(reason)


class SipParseError(RemoteProtocolError):
    """Bytes that are not a well-formed SIP message."""


class LocalProtocolError(SipError):
    """We were asked to do something the protocol forbids (a bug on our side)."""
