"""The web package's errors: one base, remote (client) errors apart from local ones."""

from __future__ import annotations

from acd.errors import AcdError

__all__ = ["WebError", "ProtocolError", "AuthError"]


class WebError(AcdError):
    """Base of :mod:`acd.web` errors."""


class ProtocolError(WebError):
    """A client broke the agent protocol; ``code`` is the protocol's error code (§3.9) and
    ``re`` the request id it answers, when known."""

    def __init__(self, code: str, message: str, re: int | None = None, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.re = re
        self.extra = extra


class AuthError(WebError):
    """Login or token refused: ``code`` is bad-credentials, locked, not-authenticated,
    token-expired or forbidden; ``status`` the HTTP status to answer with."""

    def __init__(self, code: str, message: str, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
