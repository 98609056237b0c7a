"""Trunk admission: which trunk a request belongs to, digest challenges, unknown sources.

The rule (documented in docs/configuration.md): a source inside the ``allow`` networks of a
trunk without credentials is that trunk; otherwise the request must authenticate (RFC 3261
§22.1, RFC 7616) against a trunk with credentials that accepts the source; anything else is
an unknown source, answered 403 or dropped (``sip.unknown_source``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from acd.config_schema import Config, Trunk
from acd.sip.auth import AuthStatus, Credentials, DigestServer
from acd.sip.errors import RemoteProtocolError
from acd.sip.events import Peer
from acd.sip.message import Request

__all__ = ["TrunkAdmission", "load_secret"]

log = logging.getLogger(__name__)

Verdict = "tuple[int, str | None, tuple[tuple[str, str], ...]] | str"


def load_secret(data_dir: Path) -> bytes:
    """A per-installation secret for stateless nonces; kept so nonces survive a restart."""
    path = data_dir / "nonce.secret"
    if path.exists() and path.stat().st_size >= 32:
        return path.read_bytes()
    import secrets

    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    path.write_bytes(value)
    path.chmod(0o600)
    return value


class TrunkAdmission:
    """``__call__(request, source, now)`` → trunk name (accept) or (status, reason, headers)."""

    def __init__(self, config: Config, secret: bytes,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.wall_clock = wall_clock
        self.stats: Counter[str] = Counter()
        self._digest = {
            t.name: DigestServer(t.realm or t.name, hashlib.sha256(secret + t.name.encode()).digest())
            for t in config.trunks if t.authenticates
        }

    def __call__(self, request: Request, source: Peer, now: float):  # -> Verdict
        trunk = self.config.open_trunk_for(source.host)
        if trunk is not None:
            self.stats[f"trunk_{trunk.name}"] += 1
            return trunk.name
        candidates = self.config.challenge_trunks_for(source.host)
        if not candidates:
            self.stats["unknown_source"] += 1
            log.info("request %s from unknown source %s", request.method, source)
            if self.config.sip.unknown_source == "drop":
                return (0, None, ())
            return (403, "Forbidden (unknown source)", ())
        return self._authenticate(request, source, candidates)

    def _authenticate(self, request: Request, source: Peer, candidates: tuple[Trunk, ...]):
        wall = self.wall_clock()
        values = request.headers.get_all("Authorization")
        trunk: Trunk | None = None
        for value in values:
            try:
                creds = Credentials.parse(value)
            except RemoteProtocolError:
                return (400, "Malformed Authorization", ())
            trunk = self.config.trunk_for_username(creds.username, source.host)
            if trunk is not None and trunk in candidates:
                break
            trunk = None
        if trunk is None:
            if values:
                self.stats["auth_unknown_user"] += 1
                log.info("authentication failed from %s: unknown user", source)
            return self._challenge(candidates, wall, stale=False)
        server = self._digest[trunk.name]
        result = server.verify(request.method, values, wall,
                               lambda user, realm: trunk.password if user == trunk.username else None)
        if result.ok:
            self.stats[f"trunk_{trunk.name}"] += 1
            return trunk.name
        if result.status is AuthStatus.MALFORMED:
            return (400, f"Bad credentials: {result.reason}"[:80], ())
        if not result.stale:
            self.stats["auth_failed"] += 1
            log.info("authentication failed for trunk %s from %s: %s", trunk.name, source, result.reason)
        return self._challenge((trunk,), wall, stale=result.stale)

    def _challenge(self, trunks: tuple[Trunk, ...], wall: float, *, stale: bool):
        headers = tuple(("WWW-Authenticate", value)
                        for t in trunks for value in self._digest[t.name].challenge(wall, stale=stale))
        return (401, None, headers)
