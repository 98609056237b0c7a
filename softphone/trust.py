"""Connection policy and TLS trust for the softphone: reconnect backoff, primary/secondary
failover, and trusting a server's certificate by CA or by SHA-256 fingerprint (the form the
server logs when it makes its self-signed certificate)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from softphone.errors import CertificateError, CertificateMismatch, ConfigError, ServerUnreachable, SoftphoneError, \
    UntrustedCertificate

__all__ = ["Backoff", "Failover", "Trust", "parse_fingerprint", "format_fingerprint", "normalize_url",
           "fetch_certificate", "describe_error"]

log = logging.getLogger(__name__)


# -- reconnect policy ------------------------------------------------------------------------


@dataclass
class Backoff:
    """Delays between reconnect attempts: ``base_s · factor^attempt``, capped at ``cap_s``, of
    which the fraction ``jitter`` is random (so a server restart does not see every agent come
    back in the same instant). ``attempt`` counts from 0 (the first retry)."""

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 15.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.factor >= 1 and self.cap_s >= self.base_s and 0 <= self.jitter <= 1):
            raise ValueError("backoff needs base_s > 0, factor >= 1, cap_s >= base_s, 0 <= jitter <= 1")

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter."""
        return min(self.cap_s, self.base_s * self.factor ** min(max(0, attempt), 64))

    def delay(self, attempt: int) -> float:
        d = self.ceiling(attempt)
        return d * (1 - self.jitter) + d * self.jitter * self.rng.random()


class Failover:
    """Which server to try: the primary until ``after`` attempts in a row failed, then the
    secondary (if any) until ``after`` attempts in a row fail there, then back, and so on. A
    success resets the count, so the client stays on whichever server works."""

    def __init__(self, primary: str, secondary: str | None = None, after: int = 3) -> None:
        if after < 1:
            raise ValueError("failover_after must be at least 1")
        self.servers = [primary] + ([secondary] if secondary and secondary != primary else [])
        self.after = after
        self.index = 0
        self.failures = 0
        self.switches = 0

    @property
    def current(self) -> str:
        return self.servers[self.index]

    @property
    def primary(self) -> str:
        return self.servers[0]

    @property
    def secondary(self) -> str | None:
        return self.servers[1] if len(self.servers) > 1 else None

    def failed(self) -> str:
        """One attempt on the current server failed; returns the server to try next."""
        self.failures += 1
        if len(self.servers) > 1 and self.failures >= self.after:
            self.index = 1 - self.index
            self.failures = 0
            self.switches += 1
            log.warning("failing over to %s", self.current)
        return self.current

    def succeeded(self) -> None:
        self.failures = 0

    def advance(self) -> str:
        """Go to the other server now (a first connection does not wait for N failures)."""
        if len(self.servers) > 1:
            self.index = 1 - self.index
            self.failures = 0
        return self.current


def normalize_url(url: str) -> str:
    """``host:port`` → ``https://host:port``; no trailing slash; only http(s)."""
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"bad server URL {url!r}: use https://HOST:PORT")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


# -- TLS trust -------------------------------------------------------------------------------


def parse_fingerprint(text: str) -> bytes:
    """``AA:BB:…`` (any case, colons or not, optional ``sha256:`` prefix) → 32 bytes."""
    raw = text.strip()
    if raw.lower().startswith(("sha256:", "sha-256:")):
        raw = raw.split(":", 1)[1]
    hexdigits = raw.replace(":", "").replace(" ", "")
    try:
        digest = bytes.fromhex(hexdigits)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConfigError(f"bad certificate fingerprint {text!r}: expected a SHA-256 as AA:BB:… (32 bytes)")
    return digest


def format_fingerprint(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def _is_self_signed(der: bytes) -> bool:
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        return cert.issuer == cert.subject
    except Exception:  # noqa: BLE001 - a certificate we cannot parse is simply not "self-signed"
        return False


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def fetch_certificate(url: str, timeout_s: float = 10.0) -> bytes:
    """The DER certificate a TLS server presents, without verifying it (to show its fingerprint)."""
    host, port = _host_port(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, server_hostname=host),
                                           timeout_s)
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
        raise ServerUnreachable(url, describe_error(exc)) from None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)
    if not der:
        raise CertificateError(f"the server {url} presented no certificate")
    return der


class Trust:
    """Which server certificates to accept: those that verify against the system CAs (and
    ``ca_files``), and those whose SHA-256 fingerprint is pinned."""

    def __init__(self, fingerprints: Iterable[str | bytes] = (), ca_files: Iterable[str | Path] = (),
                 system: bool = True) -> None:
        self.pins = {f if isinstance(f, bytes) else parse_fingerprint(f) for f in fingerprints}
        self.ca_files = [Path(p) for p in ca_files]
        for path in self.ca_files:
            if not path.is_file():
                raise ConfigError(f"CA file {path} does not exist")
        self.system = system
        self._ctx: ssl.SSLContext | None = None

    @property
    def pinned(self) -> list[str]:
        return sorted(format_fingerprint(p) for p in self.pins)

    def verify_context(self) -> ssl.SSLContext:
        if self._ctx is None:
            ctx = ssl.create_default_context() if self.system else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            for path in self.ca_files:
                try:
                    ctx.load_verify_locations(cafile=str(path))
                except (ssl.SSLError, OSError) as exc:
                    raise ConfigError(f"cannot load CA file {path}: {exc}") from None
            self._ctx = ctx
        return self._ctx

    async def ssl_for(self, url: str, timeout_s: float = 10.0) -> Any:
        """What to give aiohttp as ``ssl=`` for ``url``: a pinned :class:`aiohttp.Fingerprint`
        when the server's certificate is pinned (aiohttp checks it on every connection), else
        the verifying context."""
        if not url.startswith("https://"):
            return False
        if self.pins:
            digest = hashlib.sha256(await fetch_certificate(url, timeout_s)).digest()
            if digest in self.pins:
                return aiohttp.Fingerprint(digest)
        return self.verify_context()

    async def explain(self, url: str, detail: str, timeout_s: float = 10.0) -> CertificateError:
        """The error to raise for a certificate that failed verification."""
        try:
            der = await fetch_certificate(url, timeout_s)
        except SoftphoneError:
            return CertificateError(f"the certificate of {url} is not trusted ({detail})")
        fp = format_fingerprint(hashlib.sha256(der).digest())
        if self.pins:
            return CertificateMismatch(url, fp, self.pinned, self_signed=_is_self_signed(der))
        return UntrustedCertificate(url, fp, self_signed=_is_self_signed(der), detail=detail)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return str(exc.os_error) or str(exc)
    text = str(exc) or type(exc).__name__
    return text
