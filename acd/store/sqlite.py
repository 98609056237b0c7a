"""The embedded store: one SQLite file ``data_dir/homeline.db`` in WAL mode, plus the
Asterisk-format ``data_dir/queue_log`` text file.

Durability. ``PRAGMA journal_mode=WAL`` and, by default, ``synchronous=NORMAL``: a
transaction is committed when its frames are in the WAL file, without an fsync. A committed
write therefore survives a crash of the process (``kill -9``: the data is in the kernel's page
cache), and the database is never corrupted. What an OS crash or power loss can take back is
the commits since the WAL was last fsynced. :meth:`SqliteStore.sync` bounds that window: it
fsyncs the WAL file (through a descriptor of our own, so no checkpoint runs on the event loop)
and the queue_log file; it runs when a write finds the last sync older than
``sync_interval_s`` (1 s), and the server calls it on a 1-second timer. SQLite's automatic
checkpoint (every 1000 WAL pages) fsyncs too. ``synchronous="full"`` fsyncs the WAL at every
commit instead, paid on the event loop at every call end; not the default, but there for
sites that want it. Measured on the development VM (ext4 on virtio, shared, noisy): a CDR
write takes ~40-50 µs median (~75 µs mean) with NORMAL and ~210-260 µs with FULL; a
queue_log line (row + file line) ~50 µs; ``sync()`` 0.3-10 ms depending on what it flushes.

Every ``write`` commits before it returns (one transaction; ``write_all`` commits the records
of one engine step together). queue_log lines go to the table in the transaction and to the
file right after the commit, so the file never holds a line the table lacks; a kill between
the two can leave the table one step ahead of the file.

Threads. The connection belongs to the thread that opened the store (sqlite3's
``check_same_thread``); the server uses it from the asyncio thread only. Other processes
(the ``acd`` CLI) may open the same database: WAL lets them read while the server writes, and
writers wait up to ``busy_timeout_s`` for each other. Only the server writes the queue_log
file (the CLI opens the store with ``queue_log_file=False``).

Schema. ``schema_version`` holds the applied version; :data:`MIGRATIONS` are applied in order,
all in one transaction at open. A database newer than this code is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from acd.engine.records import AgentStateRecord, CallRecord, OfferRecord, QueueLogEntry, \
    format_queue_log_line
from acd.store.base import DEFAULT_ROLES, NOTE_REASONS, AgentAccount, QueueLogRow, ReadinessRecord, Row, \
    Store, StoreError, check_page, normalize_roles
from acd.store.queue_log_file import DEFAULT_KEEP, DEFAULT_MAX_BYTES, QueueLogFile

__all__ = ["SqliteStore", "MIGRATIONS", "SCHEMA_VERSION", "DB_NAME", "QUEUE_LOG_NAME"]

log = logging.getLogger(__name__)

DB_NAME = "homeline.db"
QUEUE_LOG_NAME = "queue_log"
SYNCHRONOUS = ("normal", "full")
AGENT_ID = re.compile(r"[a-z0-9_-]+")
QL_DATA_COLUMNS = 5  # data1..data5 as in Asterisk's realtime queue_log table

_CDR_COLUMNS = """
    call_id TEXT NOT NULL, caller TEXT NOT NULL, queue TEXT NOT NULL, first_queue TEXT NOT NULL,
    entered_at REAL NOT NULL, answered_at REAL, ended_at REAL NOT NULL, agent TEXT NOT NULL,
    wait_s REAL NOT NULL, talk_s REAL NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL,
    ewt_at_entry_s REAL, ewt_announced INTEGER NOT NULL, origposition INTEGER NOT NULL,
    priority INTEGER NOT NULL, overflowed_from TEXT NOT NULL, callback INTEGER NOT NULL,
    test INTEGER NOT NULL, transfers TEXT NOT NULL"""

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE agents (id TEXT PRIMARY KEY, display_name TEXT NOT NULL,
            roles TEXT NOT NULL, password_hash TEXT NOT NULL, disabled INTEGER NOT NULL,
            failed_logins INTEGER NOT NULL, locked_until REAL, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, config_password_hash TEXT NOT NULL)""",
        f"CREATE TABLE cdr (id INTEGER PRIMARY KEY, {_CDR_COLUMNS})",
        "CREATE INDEX cdr_entered ON cdr (entered_at)",
        "CREATE INDEX cdr_queue ON cdr (queue, entered_at)",
        "CREATE INDEX cdr_agent ON cdr (agent, entered_at)",
        "CREATE INDEX cdr_call ON cdr (call_id)",
        """CREATE TABLE offers (id INTEGER PRIMARY KEY, agent TEXT NOT NULL,
            call_id TEXT NOT NULL, queue TEXT NOT NULL, offered_at REAL NOT NULL,
            ended_at REAL NOT NULL, outcome TEXT NOT NULL, ring_s REAL NOT NULL,
            test INTEGER NOT NULL)""",
        "CREATE INDEX offers_offered ON offers (offered_at)",
        "CREATE INDEX offers_agent ON offers (agent, offered_at)",
        "CREATE INDEX offers_queue ON offers (queue, offered_at)",
        "CREATE INDEX offers_call ON offers (call_id)",
        """CREATE TABLE queue_log (id INTEGER PRIMARY KEY, time INTEGER NOT NULL,
            callid TEXT NOT NULL, queuename TEXT NOT NULL, agent TEXT NOT NULL,
            event TEXT NOT NULL, data TEXT NOT NULL, data1 TEXT NOT NULL, data2 TEXT NOT NULL,
            data3 TEXT NOT NULL, data4 TEXT NOT NULL, data5 TEXT NOT NULL)""",
        "CREATE INDEX queue_log_time ON queue_log (time)",
        "CREATE INDEX queue_log_queue ON queue_log (queuename, time)",
        "CREATE INDEX queue_log_agent ON queue_log (agent, time)",
        "CREATE INDEX queue_log_call ON queue_log (callid)",
        """CREATE TABLE agent_state (id INTEGER PRIMARY KEY, time REAL NOT NULL,
            agent TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL,
            reason TEXT NOT NULL, duration_s REAL NOT NULL, pending TEXT NOT NULL,
            call_id TEXT NOT NULL, test INTEGER NOT NULL)""",
        "CREATE INDEX agent_state_agent ON agent_state (agent, id)",
        "CREATE INDEX agent_state_time ON agent_state (time)",
        # the latest state-setting row and the latest row of each agent (restore)
        """CREATE TABLE agent_current (agent TEXT PRIMARY KEY, state_id INTEGER NOT NULL,
            last_id INTEGER NOT NULL)""",
    )),
    (2, (  # IVR selections and required skills; callback number and dial attempts
        "ALTER TABLE cdr ADD COLUMN ivr_path TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE cdr ADD COLUMN skills TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE cdr ADD COLUMN callback_number TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE cdr ADD COLUMN callback_attempts INTEGER NOT NULL DEFAULT 0",
    )),
    (3, (  # agents' readiness checks (echo test)
        """CREATE TABLE readiness (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, at REAL NOT NULL,
            passed INTEGER NOT NULL, rtt_ms REAL, jitter_ms REAL, loss_pct REAL NOT NULL,
            mos REAL NOT NULL, reasons TEXT NOT NULL, codec TEXT NOT NULL, seconds REAL NOT NULL)""",
        "CREATE INDEX readiness_agent ON readiness (agent, id)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

T = TypeVar("T")


class _Codec(Generic[T]):
    """Rows <-> a record dataclass whose field names are the table's columns."""

    def __init__(self, cls: type[T], table: str) -> None:
        self.cls = cls
        self.table = table
        self.fields = [(f.name, str(f.type)) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        self.names = [name for name, _ in self.fields]
        cols = ", ".join(self.names)
        self.insert = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(self.names))})"
        self.select = f"SELECT id, {cols} FROM {table}"

    def encode(self, record: T) -> tuple[Any, ...]:
        out: list[Any] = []
        for name, kind in self.fields:
            value = getattr(record, name)
            if kind.startswith("tuple"):
                value = json.dumps(list(value))
            elif kind == "bool":
                value = int(bool(value))
            out.append(value)
        return tuple(out)

    def decode(self, row: Sequence[Any]) -> Row[T]:
        values: dict[str, Any] = {}
        for (name, kind), value in zip(self.fields, row[1:]):
            if kind.startswith("tuple"):
                value = tuple(json.loads(value))
            elif kind == "bool":
                value = bool(value)
            values[name] = value
        return Row(int(row[0]), self.cls(**values))


_CDR = _Codec(CallRecord, "cdr")
_OFFER = _Codec(OfferRecord, "offers")
_STATE = _Codec(AgentStateRecord, "agent_state")
_READY = _Codec(ReadinessRecord, "readiness")
_AGENT_COLS = ("id, display_name, roles, password_hash, disabled, failed_logins, locked_until, "
               "created_at, updated_at, config_password_hash")
_QL_INSERT = ("INSERT INTO queue_log (time, callid, queuename, agent, event, data, data1, "
              "data2, data3, data4, data5) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_QL_SELECT = "SELECT id, time, callid, queuename, agent, event, data FROM queue_log"


def _agent(row: Sequence[Any]) -> AgentAccount:
    return AgentAccount(row[0], row[1], tuple(row[2].split(",")), row[3], bool(row[4]),
                        int(row[5]), row[6], row[7], row[8], row[9])


def _is_note(record: AgentStateRecord) -> bool:
    """A record that changes no state (only ``break`` -> another ``break`` is a change)."""
    return record.from_state == record.to_state and (
        record.to_state != "break" or record.reason in NOTE_REASONS)


class SqliteStore(Store):
    """:class:`~acd.store.base.Store` on SQLite; see the module docstring."""

    def __init__(self, conn: sqlite3.Connection, data_dir: Path,
                 queue_log_file: QueueLogFile | None, sync_interval_s: float) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self.qlog_file = queue_log_file
        self.sync_interval_s = sync_interval_s
        self.syncs = 0
        self._dirty = False
        self._wal_fd: int | None = None
        self._last_sync = time.monotonic()

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: str | Path, *, synchronous: str = "normal",
             queue_log_file: bool = True, queue_log_max_bytes: int = DEFAULT_MAX_BYTES,
             queue_log_keep: int = DEFAULT_KEEP, sync_interval_s: float = 1.0,
             busy_timeout_s: float = 5.0, **options: Any) -> SqliteStore:
        if options:
            raise StoreError(f"unknown SQLite store option(s): {', '.join(sorted(options))}")
        if synchronous not in SYNCHRONOUS:
            raise StoreError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        directory = Path(data_dir)
        path = directory / DB_NAME
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():  # password hashes inside: owner-only (WAL files follow)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: WAL mode refused (journal_mode={mode}); "
                                 "is the data directory on a network file system?")
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            conn.execute("PRAGMA journal_size_limit=16777216")
            _migrate(conn, path)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{path}: {exc}") from exc
        except StoreError:
            conn.close()
            raise
        qfile = (QueueLogFile(directory / QUEUE_LOG_NAME, max_bytes=queue_log_max_bytes,
                              keep=queue_log_keep, fsync_interval_s=sync_interval_s)
                 if queue_log_file else None)
        log.info("store %s opened (schema %d, synchronous=%s)", path, SCHEMA_VERSION, synchronous)
        return cls(conn, directory, qfile, sync_interval_s)

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            if self.qlog_file is not None:
                self.qlog_file.close()
        finally:
            conn, self._conn = self._conn, None
            conn.close()  # the last connection checkpoints and removes the WAL
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
        log.info("store %s closed", self.path)

    def sync(self) -> None:
        self._db()
        if self.qlog_file is not None:
            self.qlog_file.sync()
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            if self._wal_fd is None and wal.exists():  # kept open: closing it could drop locks
                self._wal_fd = os.open(wal, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            if self._wal_fd is not None and self._dirty:
                os.fsync(self._wal_fd)
        except OSError as exc:
            raise StoreError(f"{wal}: fsync failed: {exc.strerror or exc}") from exc
        self.syncs += 1
        self._dirty = False
        self._last_sync = time.monotonic()

    def schema_version(self) -> int:
        return int(self._db().execute("SELECT max(version) FROM schema_version").fetchone()[0])

    def pragma(self, name: str) -> Any:
        """The value of a read-only ``PRAGMA name`` (tests, diagnostics)."""
        if not name.replace("_", "").isalpha():
            raise StoreError(f"not a pragma name: {name!r}")
        return self._db().execute(f"PRAGMA {name}").fetchone()[0]

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot begin a transaction: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: {exc}") from exc
            raise

    def _after_write(self) -> None:
        self._dirty = True
        if time.monotonic() - self._last_sync >= self.sync_interval_s:
            self.sync()

    # -- records -----------------------------------------------------------------------

    def write_call(self, record: CallRecord) -> int:
        with self._tx() as conn:
            row_id = int(conn.execute(_CDR.insert, _CDR.encode(record)).lastrowid or 0)
        self._after_write()
        return row_id

    def write_offer(self, record: OfferRecord) -> int:
        with self._tx() as conn:
            row_id = int(conn.execute(_OFFER.insert, _OFFER.encode(record)).lastrowid or 0)
        self._after_write()
        return row_id

    def append_queue_log(self, entry: QueueLogEntry) -> QueueLogRow:
        with self._tx() as conn:
            row = self._insert_queue_log(conn, entry)
        if self.qlog_file is not None:
            self.qlog_file.append([row.line])
        self._after_write()
        return row

    def write_readiness(self, record: ReadinessRecord) -> int:
        with self._tx() as conn:
            row_id = int(conn.execute(_READY.insert, _READY.encode(record)).lastrowid or 0)
        self._after_write()
        return row_id

    def latest_readiness(self) -> list[ReadinessRecord]:
        rows = self._db().execute(f"{_READY.select} WHERE id IN (SELECT max(id) FROM readiness GROUP BY agent) "
                                  "ORDER BY agent").fetchall()
        return [_READY.decode(row).record for row in rows]

    def append_agent_state(self, record: AgentStateRecord) -> int:
        with self._tx() as conn:
            row_id = self._insert_agent_state(conn, record)
        self._after_write()
        return row_id

    def write_all(self, records: Sequence[object]) -> int:
        lines: list[str] = []
        n = 0
        with self._tx() as conn:
            for record in records:
                if isinstance(record, CallRecord):
                    conn.execute(_CDR.insert, _CDR.encode(record))
                elif isinstance(record, OfferRecord):
                    conn.execute(_OFFER.insert, _OFFER.encode(record))
                elif isinstance(record, QueueLogEntry):
                    lines.append(self._insert_queue_log(conn, record).line)
                elif isinstance(record, AgentStateRecord):
                    self._insert_agent_state(conn, record)
                else:
                    continue
                n += 1
        if lines and self.qlog_file is not None:
            self.qlog_file.append(lines)
        self._after_write()
        return n

    def _insert_queue_log(self, conn: sqlite3.Connection, entry: QueueLogEntry) -> QueueLogRow:
        row = QueueLogRow.from_line(0, format_queue_log_line(entry))
        cols = (list(row.data) + [""] * QL_DATA_COLUMNS)[:QL_DATA_COLUMNS]
        cur = conn.execute(_QL_INSERT, (row.time, row.call_id, row.queue, row.agent, row.event,
                                        "|".join(row.data), *cols))
        return dataclasses.replace(row, id=int(cur.lastrowid or 0))

    def _insert_agent_state(self, conn: sqlite3.Connection, record: AgentStateRecord) -> int:
        row_id = int(conn.execute(_STATE.insert, _STATE.encode(record)).lastrowid or 0)
        conn.execute(
            "INSERT INTO agent_current (agent, state_id, last_id) VALUES (?, ?, ?) "
            "ON CONFLICT (agent) DO UPDATE SET last_id = excluded.last_id, "
            "state_id = CASE WHEN ? THEN agent_current.state_id ELSE excluded.state_id END",
            (record.agent, row_id, row_id, _is_note(record)))
        return row_id

    # -- queries -----------------------------------------------------------------------

    def _page(self, select: str, time_col: str, filters: dict[str, Any],
              since: float | None, until: float | None, limit: int, cursor: int | None,
              newest_first: bool) -> list[Sequence[Any]]:
        check_page(limit, cursor)
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append(f"{time_col} >= ?")
            args.append(since)
        if until is not None:
            where.append(f"{time_col} < ?")
            args.append(until)
        for col, value in filters.items():
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if cursor is not None:
            where.append("id < ?" if newest_first else "id > ?")
            args.append(cursor)
        sql = select + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?"
        try:
            return self._db().execute(sql, (*args, limit)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: query failed: {exc}") from exc

    def calls(self, *, since: float | None = None, until: float | None = None,
              queue: str | None = None, agent: str | None = None, call_id: str | None = None,
              limit: int = 100, cursor: int | None = None,
              newest_first: bool = True) -> list[Row[CallRecord]]:
        rows = self._page(_CDR.select, "entered_at",
                          {"queue": queue, "agent": agent, "call_id": call_id},
                          since, until, limit, cursor, newest_first)
        return [_CDR.decode(r) for r in rows]

    def offers(self, *, since: float | None = None, until: float | None = None,
               queue: str | None = None, agent: str | None = None, call_id: str | None = None,
               limit: int = 100, cursor: int | None = None,
               newest_first: bool = True) -> list[Row[OfferRecord]]:
        rows = self._page(_OFFER.select, "offered_at",
                          {"queue": queue, "agent": agent, "call_id": call_id},
                          since, until, limit, cursor, newest_first)
        return [_OFFER.decode(r) for r in rows]

    def queue_log(self, *, since: float | None = None, until: float | None = None,
                  queue: str | None = None, agent: str | None = None,
                  call_id: str | None = None, event: str | None = None, limit: int = 1000,
                  cursor: int | None = None, newest_first: bool = False) -> list[QueueLogRow]:
        rows = self._page(_QL_SELECT, "time", {"queuename": queue, "agent": agent,
                                               "callid": call_id, "event": event},
                          since, until, limit, cursor, newest_first)
        return [QueueLogRow(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5],
                            tuple(r[6].split("|")) if r[6] else ()) for r in rows]

    def agent_states(self, *, agent: str | None = None, since: float | None = None,
                     until: float | None = None, limit: int = 1000, cursor: int | None = None,
                     newest_first: bool = True) -> list[Row[AgentStateRecord]]:
        rows = self._page(_STATE.select, "time", {"agent": agent}, since, until, limit, cursor,
                          newest_first)
        return [_STATE.decode(r) for r in rows]

    def restore_snapshot(self) -> dict[str, AgentStateRecord]:
        cols = ", ".join("l.pending" if n == "pending" else f"s.{n}" for n in _STATE.names)
        rows = self._db().execute(
            f"SELECT s.id, {cols} FROM agent_current c JOIN agent_state s ON s.id = c.state_id "
            "JOIN agent_state l ON l.id = c.last_id WHERE s.to_state != 'logged-out' "
            "ORDER BY c.agent").fetchall()
        return {r.record.agent: r.record for r in map(_STATE.decode, rows)}

    # -- agent accounts ----------------------------------------------------------------

    def create_agent(self, agent_id: str, *, display_name: str = "",
                     roles: Iterable[str] = DEFAULT_ROLES, password_hash: str = "",
                     disabled: bool = False, config_password_hash: str = "",
                     now: float | None = None) -> AgentAccount:
        if not AGENT_ID.fullmatch(agent_id):
            raise StoreError(f"agent id {agent_id!r} must match [a-z0-9_-]+")
        stamp = time.time() if now is None else now
        try:
            with self._tx() as conn:
                conn.execute(f"INSERT INTO agents ({_AGENT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                             (agent_id, display_name, ",".join(normalize_roles(roles)),
                              password_hash, int(disabled), 0, None, stamp, stamp,
                              config_password_hash))
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise StoreError(f"agent {agent_id!r} exists already") from None
            raise
        log.info("agent account %s created", agent_id)
        return self._require(agent_id)

    def update_agent(self, agent_id: str, *, now: float | None = None,
                     **changes: Any) -> AgentAccount:
        unknown = sorted(set(changes) - set(self.UPDATABLE))
        if unknown:
            raise StoreError(f"cannot update {', '.join(unknown)} of an agent")
        values = dict(changes)
        if "roles" in values:
            values["roles"] = ",".join(normalize_roles(values["roles"]))
        if "disabled" in values:
            values["disabled"] = int(bool(values["disabled"]))
        values["updated_at"] = time.time() if now is None else now
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._tx() as conn:
            cur = conn.execute(f"UPDATE agents SET {sets} WHERE id = ?", (*values.values(), agent_id))
            if cur.rowcount == 0:
                raise StoreError(f"no agent {agent_id!r}")
        log.debug("agent account %s updated: %s", agent_id, ", ".join(sorted(changes)))
        return self._require(agent_id)

    def get_agent(self, agent_id: str) -> AgentAccount | None:
        row = self._db().execute(f"SELECT {_AGENT_COLS} FROM agents WHERE id = ?",
                                 (agent_id,)).fetchone()
        return _agent(row) if row else None

    def list_agents(self) -> list[AgentAccount]:
        rows = self._db().execute(f"SELECT {_AGENT_COLS} FROM agents ORDER BY id").fetchall()
        return [_agent(r) for r in rows]

    def login_failed(self, agent_id: str, now: float, *, max_failures: int = 5,
                     lock_s: float = 300.0) -> AgentAccount:
        with self._tx() as conn:
            row = conn.execute("SELECT failed_logins FROM agents WHERE id = ?",
                               (agent_id,)).fetchone()
            if row is None:
                raise StoreError(f"no agent {agent_id!r}")
            failures = int(row[0]) + 1
            if failures >= max_failures:
                conn.execute("UPDATE agents SET failed_logins = 0, locked_until = ?, "
                             "updated_at = ? WHERE id = ?", (now + lock_s, now, agent_id))
                log.warning("agent %s locked for %g s after %d failed logins", agent_id,
                            lock_s, failures)
            else:
                conn.execute("UPDATE agents SET failed_logins = ?, updated_at = ? WHERE id = ?",
                             (failures, now, agent_id))
        return self._require(agent_id)

    def login_succeeded(self, agent_id: str, now: float) -> AgentAccount:
        return self.update_agent(agent_id, now=now, failed_logins=0, locked_until=None)

    def _require(self, agent_id: str) -> AgentAccount:
        account = self.get_agent(agent_id)
        if account is None:
            raise StoreError(f"no agent {agent_id!r}")
        return account


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                     "applied_at REAL NOT NULL)")
        current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise StoreError(f"{path}: schema version {current} is newer than this Homeline "
                             f"knows ({latest}); upgrade Homeline")
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for sql in statements:
                conn.execute(sql)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))
            log.info("%s: schema migrated to version %d", path, version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
