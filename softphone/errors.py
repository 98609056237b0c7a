"""The softphone's errors: one base class, :class:`SoftphoneError`, and one subclass per thing
an agent (or the GUI in front of them) has to act on differently.

Messages are written for the agent: they say what happened and what to do, never a stack
trace. ``exit_code`` is what the command line returns for each kind.
"""

from __future__ import annotations

__all__ = [
    "SoftphoneError", "ConfigError", "ServerUnreachable", "AuthError", "BadCredentials", "AccountLocked",
    "NotAnAgent", "CertificateError", "UntrustedCertificate", "CertificateMismatch", "ProtocolError",
    "RequestError", "ConnectionLost", "SessionReplaced", "MediaError",
]


class SoftphoneError(Exception):
    """Base of every error the softphone raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"kind": type(self).__name__, "message": self.message}


class ConfigError(SoftphoneError):
    """A bad option, configuration file or password file."""

    exit_code = 2


class ServerUnreachable(SoftphoneError):
    """No TCP/TLS connection to the server (refused, timed out, name not resolved)."""

    exit_code = 5

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"cannot reach the server {url}: {detail}")
        self.url = url
        self.detail = detail


class AuthError(SoftphoneError):
    """The server refused the agent's login."""

    exit_code = 3


class BadCredentials(AuthError):
    def __init__(self, agent: str) -> None:
        super().__init__(f"wrong agent name or password for {agent!r}")
        self.agent = agent


class AccountLocked(AuthError):
    def __init__(self, agent: str, retry_after_s: float | None, detail: str = "") -> None:
        wait = f"; try again in {retry_after_s:.0f} s" if retry_after_s is not None else ""
        super().__init__(f"the account {agent!r} is locked after too many failed logins{wait}"
                         + (f" ({detail})" if detail and retry_after_s is None else ""))
        self.agent = agent
        self.retry_after_s = retry_after_s


class NotAnAgent(AuthError):
    """Logged in, but the account may not take calls on this server (role or configuration)."""

    def __init__(self, agent: str, detail: str) -> None:
        super().__init__(f"{agent!r} may not work as an agent on this server: {detail}")
        self.agent = agent


class CertificateError(SoftphoneError):
    """The server's TLS certificate is not trusted."""

    exit_code = 4


class UntrustedCertificate(CertificateError):
    """The certificate does not verify against the trusted CAs and is not pinned.

    ``fingerprint`` is its SHA-256 (``AA:BB:…``): a GUI shows it and asks "Trust this
    server?"; trusting it means passing it as ``--trust-fingerprint``.
    """

    def __init__(self, url: str, fingerprint: str, *, self_signed: bool, detail: str = "") -> None:
        kind = "a self-signed certificate" if self_signed else "a certificate"
        msg = (f"the server {url} presented {kind} that is not trusted"
               + (f" ({detail})" if detail else "")
               + f". Its SHA-256 fingerprint is {fingerprint}. If your administrator confirms it, "
               f"trust it with --trust-fingerprint {fingerprint}")
        super().__init__(msg)
        self.url = url
        self.fingerprint = fingerprint
        self.self_signed = self_signed
        self.detail = detail

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "url": self.url, "fingerprint": self.fingerprint,
                "self_signed": self.self_signed}


class CertificateMismatch(UntrustedCertificate):
    """Fingerprints were pinned and the server's certificate matches none of them (a changed
    certificate, or someone in the middle)."""

    def __init__(self, url: str, fingerprint: str, pinned: list[str], *, self_signed: bool) -> None:
        CertificateError.__init__(
            self, f"the certificate of {url} has the SHA-256 fingerprint {fingerprint}, which matches "
                  f"none of the pinned fingerprints ({', '.join(pinned)}): the server's certificate changed, "
                  f"or the connection is being intercepted. Do not trust it unless your administrator "
                  f"confirms the new fingerprint")
        self.url = url
        self.fingerprint = fingerprint
        self.self_signed = self_signed
        self.detail = "fingerprint mismatch"
        self.pinned = pinned


class ProtocolError(SoftphoneError):
    """The server spoke something this client does not understand (or refused our version)."""


class RequestError(SoftphoneError):
    """The server answered a request with an ``error`` (docs/agent-protocol.md §3.9)."""

    def __init__(self, request: str, code: str, message: str, reply: dict | None = None) -> None:
        super().__init__(f"{request}: {message} ({code})")
        self.request = request
        self.code = code
        self.reply = reply or {}


class ConnectionLost(SoftphoneError):
    """The WebSocket went away while a request was waiting, or no connection came back in time."""

    exit_code = 5


class SessionReplaced(SoftphoneError):
    """Another client logged in as the same agent and took over (close code 4008)."""


class MediaError(SoftphoneError):
    """The WebRTC peer connection could not be set up."""
