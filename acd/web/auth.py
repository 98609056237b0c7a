"""Agent logins and session tokens (docs/agent-protocol.md §2).

Passwords are checked against the store's scrypt/argon2 hashes; failures are counted in
the store, which locks an account for ``lockout_s`` after ``lockout_after`` failures in a
row. A login yields an opaque 256-bit token valid ``ttl_s``; sessions live behind
:class:`SessionStore` (in memory here; a shared store can replace it for several nodes).
Only a SHA-256 of each token is kept, so a memory dump does not reveal live tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from acd.store.base import AgentAccounts
from acd.store.passwords import hash_password, verify_password
from acd.web.errors import AuthError

__all__ = ["Session", "SessionStore", "MemorySessions", "Authenticator", "ROLE_RANK"]

log = logging.getLogger(__name__)

ROLE_RANK = {"agent": 0, "supervisor": 1, "admin": 2}


@dataclass(frozen=True)
class Session:
    key: str  # sha256 of the token
    id: str  # public session id (logs, the welcome message)
    agent: str
    name: str
    roles: tuple[str, ...]
    created_at: float
    expires_at: float

    def has_role(self, role: str) -> bool:
        """``role`` or a higher one (admin ⊃ supervisor ⊃ agent)."""
        need = ROLE_RANK[role]
        return any(ROLE_RANK.get(r, -1) >= need for r in self.roles)


class SessionStore(ABC):
    """Where sessions live; keyed by the token's hash."""

    @abstractmethod
    def put(self, session: Session) -> None: ...

    @abstractmethod
    def get(self, key: str) -> Session | None: ...

    @abstractmethod
    def delete(self, key: str) -> Session | None: ...

    @abstractmethod
    def purge(self, now: float) -> int:
        """Forget expired sessions; returns how many."""


class MemorySessions(SessionStore):
    def __init__(self) -> None:
        self._by_key: dict[str, Session] = {}

    def put(self, session: Session) -> None:
        self._by_key[session.key] = session

    def get(self, key: str) -> Session | None:
        return self._by_key.get(key)

    def delete(self, key: str) -> Session | None:
        return self._by_key.pop(key, None)

    def purge(self, now: float) -> int:
        old = [k for k, s in self._by_key.items() if s.expires_at <= now]
        for k in old:
            del self._by_key[k]
        return len(old)


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Authenticator:
    """Logins, token checks and logouts. ``clock`` gives epoch seconds (tests inject it)."""

    def __init__(self, accounts: AgentAccounts, sessions: SessionStore | None = None, *,
                 ttl_s: float = 43200.0, lockout_after: int = 5, lockout_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.accounts = accounts
        self.sessions = sessions if sessions is not None else MemorySessions()
        self.ttl_s = ttl_s
        self.lockout_after = lockout_after
        self.lockout_s = lockout_s
        self.clock = clock
        # verified for unknown agents too, so a response time does not tell who exists
        self._dummy_hash = hash_password(secrets.token_hex(16))

    def login(self, agent: str, password: str) -> tuple[str, Session]:
        """Check a password; returns (token, session) or raises :class:`AuthError`.
        Blocking (scrypt): the server uses :meth:`login_async`."""
        account, stored = self._begin(agent)
        return self._finish(agent, account, verify_password(password, stored))

    async def login_async(self, agent: str, password: str) -> tuple[str, Session]:
        """:meth:`login` with the hash check in a worker thread; the store is used only from
        the calling (event loop) thread."""
        account, stored = self._begin(agent)
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)
        return self._finish(agent, account, ok)

    def _begin(self, agent: str) -> tuple[Any, str]:
        now = self.clock()
        account = self.accounts.get_agent(agent) if agent else None
        if account is None or account.disabled or not account.password_hash:
            return None, self._dummy_hash  # checked anyway: the timing does not tell who exists
        if account.locked(now):
            retry = round((account.locked_until or now) - now, 1)
            log.info("login refused for %s: locked for %.0f s more", agent, retry)
            raise AuthError("locked", f"too many failed logins; try again in {retry:.0f} s", 423, retry)
        return account, account.password_hash

    def _finish(self, agent: str, account: Any, ok: bool) -> tuple[str, Session]:
        now = self.clock()
        if account is None:
            log.info("login refused for %r: no such enabled account with a password", agent[:64])
            raise AuthError("bad-credentials", "wrong agent or password", 401)
        if not ok:
            after = self.accounts.login_failed(agent, now, max_failures=self.lockout_after,
                                               lock_s=self.lockout_s)
            log.info("login failed for %s (%d in a row)", agent, after.failed_logins)
            if after.locked(now):
                log.warning("agent %s locked out for %.0f s after %d failed logins", agent,
                            self.lockout_s, self.lockout_after)
                raise AuthError("locked", f"too many failed logins; try again in {self.lockout_s:.0f} s",
                                423, self.lockout_s)
            raise AuthError("bad-credentials", "wrong agent or password", 401)
        self.accounts.login_succeeded(agent, now)
        token = secrets.token_urlsafe(32)
        session = Session(token_key(token), "s-" + secrets.token_hex(6), agent,
                          account.display_name or agent, tuple(account.roles), now, now + self.ttl_s)
        self.sessions.put(session)
        self.sessions.purge(now)
        log.info("agent %s logged in (session %s, roles %s)", agent, session.id, ",".join(session.roles))
        return token, session

    def check(self, token: str | None, role: str = "agent") -> Session:
        """The session of a token that is valid now and has ``role`` (or a higher one)."""
        if not token:
            raise AuthError("not-authenticated", "log in first (no token)", 401)
        session = self.sessions.get(token_key(token))
        if session is None:
            raise AuthError("not-authenticated", "unknown or revoked token", 401)
        if session.expires_at <= self.clock():
            self.sessions.delete(session.key)
            raise AuthError("token-expired", "the session has expired; log in again", 401)
        if not session.has_role(role):
            raise AuthError("forbidden", f"this needs the {role} role", 403)
        return session

    def logout(self, token: str) -> Session | None:
        session = self.sessions.delete(token_key(token))
        if session is not None:
            log.info("agent %s logged out of session %s", session.agent, session.id)
        return session
