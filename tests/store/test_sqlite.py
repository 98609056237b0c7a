"""The SQLite store: schema and migrations, WAL, round trips, queries, paging, accounts."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

import acd.store.sqlite as sqlite_mod
from acd.engine.records import AgentStateRecord, CallRecord, OfferRecord, QueueLogEntry
from acd.store import StoreError, open_store
from acd.store.base import QueueLogRow, normalize_roles
from acd.store.sqlite import DB_NAME, SCHEMA_VERSION, SqliteStore

from tests.store.records import EPOCH, cdr, offer, state

# -- schema -------------------------------------------------------------------------------


def _tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_schema_created_and_version_kept(tmp_path: Path) -> None:
    data = tmp_path / "new" / "dir"
    with open_store(data) as s:
        assert isinstance(s, SqliteStore)
        assert s.schema_version() == SCHEMA_VERSION
        s.write(cdr(1))
    assert {"schema_version", "agents", "cdr", "offers", "queue_log", "agent_state",
            "agent_current"} <= _tables(data / DB_NAME)
    with open_store(data) as s:  # second open: nothing re-applied, data kept
        assert s.schema_version() == SCHEMA_VERSION
        assert len(s.calls()) == 1
    with closing(sqlite3.connect(data / DB_NAME)) as conn:
        versions = conn.execute("SELECT version FROM schema_version").fetchall()
        assert versions == [(v,) for v, _ in sqlite_mod.MIGRATIONS] and versions[-1] == (SCHEMA_VERSION,)


def test_forward_migration_and_newer_schema_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(tmp_path) as s:
        s.write(cdr(1))
    v2 = (SCHEMA_VERSION + 1, ("ALTER TABLE cdr ADD COLUMN note TEXT NOT NULL DEFAULT ''",
                               "CREATE INDEX cdr_note ON cdr (note)"))
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", sqlite_mod.MIGRATIONS + (v2,))
    with open_store(tmp_path) as s:
        assert s.schema_version() == SCHEMA_VERSION + 1
    with closing(sqlite3.connect(tmp_path / DB_NAME)) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(cdr)")]
        assert cols[-1] == "note"
        assert conn.execute("SELECT count(*) FROM cdr").fetchone() == (1,)
    monkeypatch.undo()  # back to this code's schema: the newer database is refused
    with pytest.raises(StoreError, match="newer"):
        open_store(tmp_path)


def test_version_1_database_gains_the_ivr_and_callback_columns(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", sqlite_mod.MIGRATIONS[:1])
    with closing(sqlite3.connect(tmp_path / DB_NAME)) as conn:  # a database made by version 1
        sqlite_mod._migrate(conn, tmp_path / DB_NAME)
        cols = [f.name for f in dataclasses.fields(CallRecord)][:-4]
        old = cdr(1)
        conn.execute(f"INSERT INTO cdr ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     sqlite_mod._CDR.encode(old)[:len(cols)])
        conn.commit()
    monkeypatch.undo()
    with open_store(tmp_path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        (row,) = s.calls()
        assert row.record == old  # the new columns read back as their defaults
        s.write(dataclasses.replace(cdr(2), ivr_path=("main:1",), skills=("french",),
                                    callback_number="555", callback_attempts=2))
        new = s.calls(newest_first=True)[0].record
        assert (new.ivr_path, new.skills, new.callback_attempts) == (("main:1",), ("french",), 2)


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(tmp_path):
        pass
    bad = (SCHEMA_VERSION + 1, ("CREATE TABLE extra (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(sqlite_mod, "MIGRATIONS", sqlite_mod.MIGRATIONS + (bad,))
    with pytest.raises(StoreError):
        open_store(tmp_path)
    assert "extra" not in _tables(tmp_path / DB_NAME)
    monkeypatch.undo()
    with open_store(tmp_path) as s:
        assert s.schema_version() == SCHEMA_VERSION


def test_wal_mode_and_pragmas(store: SqliteStore) -> None:
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 1  # NORMAL
    with closing(sqlite3.connect(store.path)) as other:  # persistent: seen by others
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_synchronous_full_option(tmp_path: Path) -> None:
    with open_store(tmp_path, synchronous="full") as s:
        assert s.pragma("synchronous") == 2
        s.write(cdr(1))
    with pytest.raises(StoreError, match="synchronous"):
        open_store(tmp_path, synchronous="off")
    with pytest.raises(StoreError, match="unknown"):
        open_store(tmp_path, bogus=1)
    with pytest.raises(StoreError, match="backend"):
        open_store(tmp_path, backend="redis")


def test_database_is_owner_only(tmp_path: Path) -> None:
    with open_store(tmp_path / "d"):
        pass
    assert stat.S_IMODE((tmp_path / "d" / DB_NAME).stat().st_mode) == 0o600


def test_tables_hold_every_record_field(store: SqliteStore) -> None:
    """A field added to an engine record without a migration fails here."""
    conn = sqlite3.connect(store.path)
    for cls, table in ((CallRecord, "cdr"), (OfferRecord, "offers"),
                       (AgentStateRecord, "agent_state")):
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        assert {f.name for f in dataclasses.fields(cls)} <= cols, table
    conn.close()


def test_indexes_used_by_queries(store: SqliteStore) -> None:
    conn = sqlite3.connect(store.path)
    for sql in ("SELECT * FROM cdr WHERE queue = 'q' AND entered_at >= 5",
                "SELECT * FROM offers WHERE agent = 'a' AND offered_at >= 5",
                "SELECT * FROM queue_log WHERE callid = 'c'",
                "SELECT * FROM agent_state WHERE agent = 'a' ORDER BY id DESC"):
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)
    conn.close()


# -- records ------------------------------------------------------------------------------


def test_each_record_type_round_trips(tmp_path: Path) -> None:
    call = cdr(1, overflowed_from=("sales", "vip"), transfers=("x",), callback=True, test=True,
               answered_at=None, ewt_at_entry_s=None, agent="", outcome="abandoned")
    off = offer(1, test=True)
    st = state(5.5, "alice", "available", "break", "lunch", pending="", call_id="c9")
    ql = QueueLogEntry(EPOCH + 7.9, "c1", "support", "alice", "CONNECT", ("12", "c1.leg", "3"))
    with open_store(tmp_path) as s:
        ids = [s.write(r) for r in (call, off, st, ql)]
        assert all(i == 1 for i in ids)
    with open_store(tmp_path) as s:  # read back after a reopen
        assert [r.record for r in s.calls()] == [call]
        assert [r.record for r in s.offers()] == [off]
        assert [r.record for r in s.agent_states()] == [st]
        row = s.queue_log()[0]
        assert row == QueueLogRow(1, int(EPOCH + 7), "c1", "support", "alice", "CONNECT",
                                  ("12", "c1.leg", "3"))


def test_write_rejects_other_objects(store: SqliteStore) -> None:
    with pytest.raises(StoreError, match="not a record"):
        store.write("hello")


def test_write_all_is_one_step(store: SqliteStore) -> None:
    recs = [cdr(1), offer(1), object(), QueueLogEntry(EPOCH, "c", "q", "a", "ABANDON", ("1", "1", "5")),
            state(1, "bob", "logged-out", "available", "login")]
    assert store.write_all(recs) == 4
    assert len(store.calls()) == len(store.offers()) == len(store.queue_log()) == 1
    assert store.restore_snapshot()["bob"].to_state == "available"


def test_queries_filter_and_page(store: SqliteStore) -> None:
    for i in range(1, 31):
        store.write(cdr(i, queue="sales" if i % 3 == 0 else "support",
                        agent="bob" if i % 2 else "alice"))
        store.write(offer(i, agent="bob" if i % 2 else "alice"))
    assert len(store.calls(limit=1000)) == 30
    sales = store.calls(queue="sales", limit=1000)
    assert [r.record.call_id for r in sales] == [cdr(i).call_id for i in (30, 27, 24, 21, 18, 15,
                                                                        12, 9, 6, 3)]
    window = store.calls(since=EPOCH + 10, until=EPOCH + 20, limit=1000, newest_first=False)
    assert [r.record.entered_at for r in window] == [EPOCH + i for i in range(10, 20)]
    assert {r.record.agent for r in store.calls(agent="bob", queue="sales", limit=1000)} == {"bob"}
    assert store.calls(call_id=cdr(7).call_id)[0].record == cdr(7, agent="bob")
    pages, cursor = [], None  # keyset paging, newest first
    while True:
        page = store.calls(limit=7, cursor=cursor)
        if not page:
            break
        pages.append([r.id for r in page])
        cursor = page[-1].id
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert sum(pages, []) == list(range(30, 0, -1))
    assert [r.id for r in store.calls(limit=5, cursor=10, newest_first=False)] == [11, 12, 13, 14, 15]
    assert len(store.offers(agent="alice", limit=1000)) == 15
    assert len(store.offers(since=EPOCH + 2 + 25, limit=1000)) == 6
    with pytest.raises(StoreError, match="limit"):
        store.calls(limit=0)
    with pytest.raises(StoreError, match="cursor"):
        store.calls(cursor=-1)


def test_queue_log_queries(store: SqliteStore) -> None:
    for i in range(10):
        store.write(QueueLogEntry(EPOCH + i, f"c{i % 3}", "q1" if i < 5 else "q2",
                                  "alice" if i % 2 else "", "ENTERQUEUE", ("", "555", "1")))
    assert [r.time for r in store.queue_log(queue="q2")] == [int(EPOCH) + i for i in range(5, 10)]
    assert [r.id for r in store.queue_log(call_id="c1")] == [2, 5, 8]
    assert len(store.queue_log(agent="NONE")) == 5  # as in the file
    assert [r.id for r in store.queue_log(newest_first=True, limit=2)] == [10, 9]
    assert len(store.queue_log(event="CONNECT")) == 0


def test_closed_store_refuses(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.write(cdr(1))
    with pytest.raises(StoreError, match="closed"):
        s.list_agents()


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(blocker / "sub")


def test_sync_fsyncs_and_counts(store: SqliteStore) -> None:
    store.write(QueueLogEntry(EPOCH, "c", "q", "a", "ABANDON", ("1", "1", "5")))
    before = store.syncs
    store.sync()
    assert store.syncs == before + 1
    assert store.qlog_file is not None and store.qlog_file.fsyncs >= 1


# -- agent accounts -----------------------------------------------------------------------


def test_agent_accounts(store: SqliteStore) -> None:
    a = store.create_agent("alice", display_name="Alice", password_hash="$scrypt$x", now=100.0)
    assert (a.roles, a.disabled, a.failed_logins, a.locked_until) == (("agent",), False, 0, None)
    assert (a.created_at, a.updated_at) == (100.0, 100.0)
    with pytest.raises(StoreError, match="exists"):
        store.create_agent("alice")
    with pytest.raises(StoreError, match="must match"):
        store.create_agent("Bad Name")
    b = store.update_agent("alice", now=200.0, roles=["supervisor", "agent"], disabled=True)
    assert b.roles == ("agent", "supervisor") and b.disabled and b.updated_at == 200.0
    assert b.created_at == 100.0 and b.password_hash == "$scrypt$x"
    store.create_agent("bob", roles="admin")
    assert [x.id for x in store.list_agents()] == ["alice", "bob"]
    assert store.get_agent("bob").roles == ("admin",)  # type: ignore[union-attr]
    assert store.get_agent("carol") is None
    with pytest.raises(StoreError, match="no agent"):
        store.update_agent("carol", disabled=True)
    with pytest.raises(StoreError, match="cannot update"):
        store.update_agent("bob", id="x")
    with pytest.raises(StoreError, match="unknown role"):
        store.update_agent("bob", roles="boss")
    assert store.get_agent("bob").roles == ("admin",)  # type: ignore[union-attr]


def test_roles_rules() -> None:
    assert normalize_roles("admin, agent") == ("agent", "admin")
    assert normalize_roles(["supervisor"]) == ("supervisor",)
    with pytest.raises(StoreError):
        normalize_roles("")
    with pytest.raises(StoreError):
        normalize_roles(["agent", "root"])


def test_login_lockout_counters(store: SqliteStore) -> None:
    store.create_agent("alice", password_hash="h")
    for n in range(1, 3):
        a = store.login_failed("alice", 1000.0, max_failures=3, lock_s=60)
        assert a.failed_logins == n and not a.locked(1000.0)
    a = store.login_failed("alice", 1001.0, max_failures=3, lock_s=60)
    assert a.locked_until == 1061.0 and a.failed_logins == 0
    assert a.locked(1060.9) and not a.locked(1061.0)
    assert not a.can_log_in(1030.0) and a.can_log_in(1062.0)
    store.login_failed("alice", 1070.0, max_failures=3)
    a = store.login_succeeded("alice", 1071.0)
    assert a.failed_logins == 0 and a.locked_until is None
    with pytest.raises(StoreError, match="no agent"):
        store.login_failed("nobody", 1.0)


def test_readiness_results_latest_per_agent(tmp_path: Path) -> None:
    from acd.store.base import ReadinessRecord

    with open_store(tmp_path) as s:
        s.write_readiness(ReadinessRecord("bob", EPOCH, False, 500.0, 40.0, 5.0, 2.9, ("rtt", "jitter")))
        s.write_readiness(ReadinessRecord("alice", EPOCH + 1, True, 20.0, 1.0, 0.0, 4.3, codec="opus", seconds=10))
        s.write_readiness(ReadinessRecord("bob", EPOCH + 2, True, 30.0, 2.0, 0.0, 4.2))
    with open_store(tmp_path) as s:
        latest = s.latest_readiness()
    assert [(r.agent, r.passed, r.at) for r in latest] == [("alice", True, EPOCH + 1), ("bob", True, EPOCH + 2)]
    assert latest[0].codec == "opus" and latest[0].reasons == ()
