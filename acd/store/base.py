"""The store's interfaces: agent accounts, call history, queue_log and agent states.

The engine emits records (:mod:`acd.engine.records`); a :class:`Store` keeps them, and keeps
the agents' accounts (password hash, roles, web-login lockout). SQLite (``acd.store.sqlite``)
is the embedded default; a shared store (PostgreSQL, Redis) implements the same four
interfaces so that several nodes can share agents and history later.

Rules every implementation keeps:

- ``write(record)`` returns only once the record is committed: a CDR whose ``write`` has
  returned survives a crash of the process (``kill -9``).
- Queries page by row id (``cursor``): pass the last row's ``id`` to get the next page.
  Rows come newest first unless ``newest_first=False``.
- Times are epoch seconds, as in the records.

**Restore after a restart.** :meth:`AgentStateLog.restore_snapshot` returns, for each agent
whose last known state is not ``logged-out``, the record that put it into that state (the
break reason of a break, the call of a call), with ``pending`` taken from the agent's latest
record (a deferred logout or break asked for during the call). Notes (records whose state
does not change, ``reason`` in :data:`NOTE_REASONS`) never replace the state. What the
server does with the snapshot is :func:`acd.store.sync.restore_events`: calls did not survive
the restart, so every restored agent comes back logged in as if its connection had just
dropped (breaks kept, deferred work applied).
"""

from __future__ import annotations

import importlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from acd.engine.records import AgentStateRecord, CallRecord, OfferRecord, QueueLogEntry
from acd.errors import AcdError

__all__ = [
    "StoreError",
    "AgentAccount",
    "Row",
    "QueueLogRow",
    "AgentAccounts",
    "CallHistory",
    "QueueLog",
    "AgentStateLog",
    "ReadinessLog",
    "ReadinessRecord",
    "Store",
    "open_store",
    "ROLES",
    "DEFAULT_ROLES",
    "RECORD_TYPES",
    "NOTE_REASONS",
    "normalize_roles",
]

log = logging.getLogger(__name__)

ROLES = ("agent", "supervisor", "admin")
DEFAULT_ROLES = ("agent",)
RECORD_TYPES = (CallRecord, OfferRecord, QueueLogEntry, AgentStateRecord)
# Reasons of AgentStateRecords that note something without changing the state.
NOTE_REASONS = frozenset({"logout-pending", "break-pending", "difficult-call",
                          "pending-cancelled", "connection-lost", "connection-restored"})
BACKENDS = {"sqlite": "acd.store.sqlite:SqliteStore"}
MAX_PAGE = 10_000

R = TypeVar("R")


class StoreError(AcdError):
    """The store cannot do what was asked (unknown agent, bad roles, I/O or schema trouble)."""


def normalize_roles(roles: Iterable[str] | str) -> tuple[str, ...]:
    """Roles in canonical order; ``"agent,supervisor"`` or an iterable; at least one role."""
    items = roles.split(",") if isinstance(roles, str) else list(roles)
    wanted = {r.strip() for r in items if r.strip()}
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise StoreError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if not wanted:
        raise StoreError("an agent needs at least one role (disable the account instead)")
    return tuple(r for r in ROLES if r in wanted)


@dataclass(frozen=True)
class AgentAccount:
    """An agent's login account. ``config_password_hash`` is the config file's
    ``password_hash`` last applied, so that a changed file wins over the CLI but an
    unchanged one does not undo ``acd agents set-password``."""

    id: str
    display_name: str = ""
    roles: tuple[str, ...] = DEFAULT_ROLES
    password_hash: str = ""
    disabled: bool = False
    failed_logins: int = 0
    locked_until: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    config_password_hash: str = ""

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def can_log_in(self, now: float) -> bool:
        return bool(self.password_hash) and not self.disabled and not self.locked(now)


@dataclass(frozen=True)
class Row(Generic[R]):
    """A stored record and its row id (the paging cursor)."""

    id: int
    record: R


@dataclass(frozen=True)
class QueueLogRow:
    """A queue_log row: the fields of the file's line (``NONE`` filled in, cleaned)."""

    id: int
    time: int
    call_id: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]

    @property
    def line(self) -> str:
        """The line as in the queue_log file (no newline)."""
        return "|".join((str(self.time), self.call_id, self.queue, self.agent, self.event,
                         *(self.data or ("",))))

    @classmethod
    def from_line(cls, row_id: int, line: str) -> QueueLogRow:
        parts = line.split("|")
        if len(parts) < 6 or not parts[0].isdigit():
            raise StoreError(f"not a queue_log line: {line!r}")
        data = tuple(parts[5:])
        return cls(row_id, int(parts[0]), parts[1], parts[2], parts[3], parts[4],
                   () if data == ("",) else data)


# --------------------------------------------------------------------------- interfaces


class AgentAccounts(ABC):
    """Agents' accounts; ids are the ``[agents.NAME]`` names."""

    UPDATABLE = ("display_name", "roles", "password_hash", "disabled", "failed_logins",
                 "locked_until", "config_password_hash")

    @abstractmethod
    def create_agent(self, agent_id: str, *, display_name: str = "",
                     roles: Iterable[str] = DEFAULT_ROLES, password_hash: str = "",
                     disabled: bool = False, config_password_hash: str = "",
                     now: float | None = None) -> AgentAccount:
        """Create an account; :class:`StoreError` if it exists."""

    @abstractmethod
    def update_agent(self, agent_id: str, *, now: float | None = None,
                     **changes: Any) -> AgentAccount:
        """Change fields named in :attr:`UPDATABLE`; :class:`StoreError` if unknown."""

    @abstractmethod
    def get_agent(self, agent_id: str) -> AgentAccount | None: ...

    @abstractmethod
    def list_agents(self) -> list[AgentAccount]:
        """All accounts, by id."""

    @abstractmethod
    def login_failed(self, agent_id: str, now: float, *, max_failures: int = 5,
                     lock_s: float = 300.0) -> AgentAccount:
        """Count a failed login atomically; the ``max_failures``-th locks the account for
        ``lock_s`` seconds and restarts the count."""

    @abstractmethod
    def login_succeeded(self, agent_id: str, now: float) -> AgentAccount:
        """Clear the failure count and any lock."""


class CallHistory(ABC):
    """CDRs (one per call) and offers (one per agent offer)."""

    @abstractmethod
    def write_call(self, record: CallRecord) -> int:
        """Commit one CDR; returns its row id once it is durable against a process crash."""

    @abstractmethod
    def write_offer(self, record: OfferRecord) -> int: ...

    @abstractmethod
    def calls(self, *, since: float | None = None, until: float | None = None,
              queue: str | None = None, agent: str | None = None, call_id: str | None = None,
              limit: int = 100, cursor: int | None = None,
              newest_first: bool = True) -> list[Row[CallRecord]]:
        """CDRs whose ``entered_at`` is in ``[since, until)``, filtered, one page."""

    @abstractmethod
    def offers(self, *, since: float | None = None, until: float | None = None,
               queue: str | None = None, agent: str | None = None, call_id: str | None = None,
               limit: int = 100, cursor: int | None = None,
               newest_first: bool = True) -> list[Row[OfferRecord]]:
        """Offers whose ``offered_at`` is in ``[since, until)``, filtered, one page."""


class QueueLog(ABC):
    """Asterisk's queue_log, as a table (and, for SQLite, as a file next to it)."""

    @abstractmethod
    def append_queue_log(self, entry: QueueLogEntry) -> QueueLogRow: ...

    @abstractmethod
    def queue_log(self, *, since: float | None = None, until: float | None = None,
                  queue: str | None = None, agent: str | None = None,
                  call_id: str | None = None, event: str | None = None, limit: int = 1000,
                  cursor: int | None = None, newest_first: bool = False) -> list[QueueLogRow]:
        """Rows in file order by default (oldest first)."""


class AgentStateLog(ABC):
    """Every agent state change, and the latest state per agent."""

    @abstractmethod
    def append_agent_state(self, record: AgentStateRecord) -> int: ...

    @abstractmethod
    def agent_states(self, *, agent: str | None = None, since: float | None = None,
                     until: float | None = None, limit: int = 1000, cursor: int | None = None,
                     newest_first: bool = True) -> list[Row[AgentStateRecord]]: ...

    @abstractmethod
    def restore_snapshot(self) -> dict[str, AgentStateRecord]:
        """The state of every agent not logged out (see the module docstring)."""


@dataclass(frozen=True)
class ReadinessRecord:
    """One agent readiness check (the echo test of docs/agent-protocol.md §3.8)."""

    agent: str
    at: float
    passed: bool
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float
    mos: float
    reasons: tuple[str, ...] = ()
    codec: str = ""
    seconds: float = 0.0


class ReadinessLog(ABC):
    """Home agents' readiness checks, for supervisors."""

    @abstractmethod
    def write_readiness(self, record: ReadinessRecord) -> int: ...

    @abstractmethod
    def latest_readiness(self) -> list[ReadinessRecord]:
        """The newest check of each agent, by agent."""


class Store(AgentAccounts, CallHistory, QueueLog, AgentStateLog, ReadinessLog):
    """All five interfaces behind one object, opened on a data directory."""

    @classmethod
    @abstractmethod
    def open(cls, data_dir: str | Path, **options: Any) -> Store: ...

    @abstractmethod
    def close(self) -> None:
        """Sync and release everything; the store is unusable afterwards."""

    @abstractmethod
    def sync(self) -> None:
        """Make everything written so far durable against an OS crash (the server calls
        this about once a second; writes also do it when the last sync is older)."""

    def write(self, record: object) -> int:
        """Store any engine record (see :data:`RECORD_TYPES`); returns its row id."""
        if isinstance(record, CallRecord):
            return self.write_call(record)
        if isinstance(record, OfferRecord):
            return self.write_offer(record)
        if isinstance(record, QueueLogEntry):
            return self.append_queue_log(record).id
        if isinstance(record, AgentStateRecord):
            return self.append_agent_state(record)
        raise StoreError(f"not a record the store keeps: {type(record).__name__}")

    def write_all(self, records: Sequence[object]) -> int:
        """Store the records of one engine step (others are skipped); returns how many.
        Implementations may commit them in one transaction."""
        n = 0
        for record in records:
            if isinstance(record, RECORD_TYPES):
                self.write(record)
                n += 1
        return n

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(data_dir: str | Path, backend: str = "sqlite", **options: Any) -> Store:
    """Open the store of ``backend`` (only ``"sqlite"`` so far) on ``data_dir``."""
    target = BACKENDS.get(backend)
    if target is None:
        raise StoreError(f"unknown store backend {backend!r} (known: {', '.join(BACKENDS)})")
    module, _, name = target.partition(":")
    cls: type[Store] = getattr(importlib.import_module(module), name)
    started = time.perf_counter()
    store = cls.open(data_dir, **options)
    log.debug("store %s opened on %s in %.1f ms", backend, data_dir,
              (time.perf_counter() - started) * 1e3)
    return store


def check_page(limit: int, cursor: int | None) -> None:
    """Validate paging arguments (shared by the implementations)."""
    if not 1 <= limit <= MAX_PAGE:
        raise StoreError(f"limit must be 1..{MAX_PAGE}, not {limit}")
    if cursor is not None and cursor < 0:
        raise StoreError(f"cursor must be a row id, not {cursor}")
