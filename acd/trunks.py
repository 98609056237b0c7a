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
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        self._failures: dict[str, deque[float]] = {}  # source IP → failure times (monotonic)
        self._blocked: dict[str, float] = {}  # source IP → blocked until
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
            return self._refuse("Forbidden (unknown source)")
        if self._blocked.get(source.host, 0.0) > now:
            self.stats["blocked"] += 1
            return self._refuse("Forbidden (too many failed authentications)")
        verdict, failed = self._authenticate(request, source, candidates)
        if failed:
            self._count_failure(source.host, now)
        return verdict

    def _refuse(self, reason: str):
        return (0, None, ()) if self.config.sip.unknown_source == "drop" else (403, reason, ())

    def _count_failure(self, host: str, now: float) -> None:
        limit, window = self.config.sip.auth_failures, self.config.sip.auth_block_seconds
        if not limit:
            return
        times = self._failures.setdefault(host, deque(maxlen=limit))
        times.append(now)
        if len(times) == limit and now - times[0] <= window:
            self._blocked[host] = now + window
            self._failures.pop(host, None)
            log.warning("blocking %s for %d s after %d failed authentications", host, window, limit)
        if len(self._failures) > 10000:  # bound memory under a distributed attack
            self._failures.pop(next(iter(self._failures)))
        for ip in [ip for ip, until in self._blocked.items() if until <= now]:
            del self._blocked[ip]

    def _authenticate(self, request: Request, source: Peer, candidates: tuple[Trunk, ...]) -> tuple[Any, bool]:
        """(verdict, whether credentials were presented and wrong)."""
        wall = self.wall_clock()
        values = request.headers.get_all("Authorization")
        trunk: Trunk | None = None
        for value in values:
            try:
                creds = Credentials.parse(value)
            except RemoteProtocolError:
                return (400, "Malformed Authorization", ()), True
            trunk = self.config.trunk_for_username(creds.username, source.host)
            if trunk is not None and trunk in candidates:
                break
            trunk = None
        if trunk is None:
            if values:
                self.stats["auth_unknown_user"] += 1
                log.info("authentication failed from %s: unknown user", source)
            return self._challenge(candidates, wall, stale=False), bool(values)
        server = self._digest[trunk.name]
        result = server.verify(request.method, values, wall,
                               lambda user, realm: trunk.password if user == trunk.username else None)
        if result.ok:
            self.stats[f"trunk_{trunk.name}"] += 1
            return trunk.name, False
        if result.status is AuthStatus.MALFORMED:
            return (400, f"Bad credentials: {result.reason}"[:80], ()), True
        if not result.stale:
            self.stats["auth_failed"] += 1
            log.info("authentication failed for trunk %s from %s: %s", trunk.name, source, result.reason)
        return self._challenge((trunk,), wall, stale=result.stale), not result.stale

    def _challenge(self, trunks: tuple[Trunk, ...], wall: float, *, stale: bool):
        headers = tuple(("WWW-Authenticate", value)
                        for t in trunks for value in self._digest[t.name].challenge(wall, stale=stale))
        return (401, None, headers)
