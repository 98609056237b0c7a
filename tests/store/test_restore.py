"""Accounts seeded from the config, and agents' state restored after a restart."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from acd.engine import Engine, EngineConfig, engine_config_from_toml
from acd.engine.events import AgentBreak, AgentConnectionLost, AgentConnectionRestored, \
    AgentLogin, AgentLogout, CallEnters, Event, FlagDifficult, OfferAnswered
from acd.engine.records import AgentStateRecord
from acd.store import hash_password, open_store, restore_agents, restore_events, \
    sync_agents_from_config, verify_password
from acd.store.sqlite import SqliteStore

from tests.store.records import state

EPOCH = 1_700_000_000.0


def _config(agents: dict[str, Any], **acd: Any) -> EngineConfig:
    return engine_config_from_toml({"support": {"wrapup_s": 30}}, agents,
                                   {"breaks": {"lunch": {}, "training": {}},
                                    "reconcile_after_s": 0, **acd}, file="t.toml")


# -- accounts from the config -------------------------------------------------------------


def test_sync_creates_updates_and_keeps_cli_passwords(store: SqliteStore) -> None:
    h1 = hash_password("one")
    cfg = _config({"alice": {"name": "Alice M", "password_hash": h1, "queues": {"support": 1}},
                   "bob": {"queues": {"support": 1}}})
    r = sync_agents_from_config(store, cfg, now=10.0)
    assert (r.created, r.updated, r.unchanged) == (("alice", "bob"), (), ())
    alice = store.get_agent("alice")
    assert alice is not None and alice.display_name == "Alice M" and alice.roles == ("agent",)
    assert verify_password("one", alice.password_hash)
    assert store.get_agent("bob").display_name == "bob"  # type: ignore[union-attr]

    # the CLI sets another password and roles; an unchanged config keeps both
    store.update_agent("alice", password_hash=hash_password("two"), roles="agent,supervisor")
    r = sync_agents_from_config(store, cfg, now=20.0)
    assert r.unchanged == ("alice", "bob") and r.updated == ()
    alice = store.get_agent("alice")
    assert alice is not None and verify_password("two", alice.password_hash)
    assert alice.roles == ("agent", "supervisor")

    # a new hash in the file wins; a renamed agent is renamed; a removed agent is reported
    h3 = hash_password("three")
    cfg2 = _config({"alice": {"name": "Alice Martin", "password_hash": h3,
                              "queues": {"support": 1}}})
    r = sync_agents_from_config(store, cfg2, now=30.0)
    assert r.updated == ("alice",) and r.not_in_config == ("bob",)
    alice = store.get_agent("alice")
    assert alice is not None and verify_password("three", alice.password_hash)
    assert alice.display_name == "Alice Martin" and alice.updated_at == 30.0
    assert alice.roles == ("agent", "supervisor")
    assert store.get_agent("bob") is not None  # kept

    # the key removed from the file: the stored hash stays
    r = sync_agents_from_config(store, _config({"alice": {"name": "Alice Martin"}}))
    alice = store.get_agent("alice")
    assert alice is not None and verify_password("three", alice.password_hash)
    assert alice.config_password_hash == ""


# -- snapshot ----------------------------------------------------------------------------


def test_snapshot_keeps_state_through_notes(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        s.write_all([
            state(0, "a", "logged-out", "available", "login"),
            state(1, "a", "available", "break", "lunch"),
            state(2, "a", "break", "break", "connection-lost"),  # a note: still lunch
            state(3, "a", "break", "break", "training"),  # a change of break
            state(4, "a", "break", "break", "connection-restored"),
            state(0, "b", "logged-out", "available", "login"),
            state(5, "b", "available", "reserved", "offer", call_id="c1"),
            state(6, "b", "reserved", "on-call", "answered", call_id="c1"),
            state(7, "b", "on-call", "on-call", "break-pending", pending="break:lunch"),
            state(0, "c", "logged-out", "available", "login"),
            state(9, "c", "available", "logged-out", "logout"),
        ])
    with open_store(tmp_path) as s:  # the restart
        snap = s.restore_snapshot()
    assert set(snap) == {"a", "b"}
    assert snap["a"] == state(3, "a", "break", "break", "training")
    assert snap["b"] == state(6, "b", "reserved", "on-call", "answered", call_id="c1",
                              pending="break:lunch")


# -- the whole path: engine -> store -> restart -> engine ---------------------------------


class Driver:
    def __init__(self, cfg: EngineConfig, store: SqliteStore, epoch: float = EPOCH) -> None:
        self.engine = Engine(cfg, rng=random.Random(3), epoch=epoch)
        self.store = store

    def send(self, ev: Event, now: float) -> None:
        self.engine.handle(ev, now)
        self.store.write_all(self.engine.actions())

    def state(self, agent: str) -> tuple[str, str, bool]:
        v = self.engine.agent_view(agent)
        return v.state, v.reason, v.connected


AGENTS = {name: {"queues": {"support": 1}} for name in
          ("avail", "lunch", "oncall", "leaving", "pausing", "difficult", "gone", "dropped")}


def _before_restart(store: SqliteStore, cfg: EngineConfig) -> Driver:
    d = Driver(cfg, store)
    # four agents take a call each (alone available at the time), then ask for more
    follow_ups: list[tuple[str, Event | None]] = [
        ("leaving", AgentLogout("leaving")), ("pausing", AgentBreak("pausing", "training")),
        ("difficult", FlagDifficult("difficult")), ("oncall", None)]
    for i, (name, then) in enumerate(follow_ups):
        t = 10.0 * i
        d.send(AgentLogin(name), t)
        d.send(CallEnters(f"call{i}", "support", caller="555"), t + 1)
        assert d.engine.agent_view(name).call == f"call{i}", name
        d.send(OfferAnswered(name, f"call{i}"), t + 2)
        if then is not None:
            d.send(then, t + 3)
    d.send(AgentLogin("avail"), 50)
    for i, name in enumerate(("lunch", "dropped", "gone")):
        d.send(AgentLogin(name), 51 + i)
        d.send(AgentBreak(name, "lunch"), 51.5 + i)
    d.send(AgentLogout("gone"), 55)
    d.send(AgentConnectionLost("dropped"), 56)  # on lunch, connection in its grace
    assert d.state("oncall")[0] == d.state("leaving")[0] == "on-call"
    assert d.state("lunch") == ("break", "lunch", True)
    assert d.state("dropped") == ("break", "lunch", False)
    assert d.state("avail")[0] == "available" and d.state("gone")[0] == "logged-out"
    return d


def test_restore_after_restart(tmp_path: Path) -> None:
    cfg = _config(AGENTS, connection_grace_s=30, disconnect_to="logged-out")
    with open_store(tmp_path) as s:
        _before_restart(s, cfg)
    # -- restart: a new process, a new engine, the same data directory
    with open_store(tmp_path) as s:
        snap = s.restore_snapshot()
        assert set(snap) == set(AGENTS) - {"gone"}
        assert snap["leaving"].pending == "logout" and snap["pausing"].pending == "break:training"
        assert snap["difficult"].pending == "recovery"
        assert snap["dropped"].to_state == "break" and snap["dropped"].reason == "lunch"
        last_id = s.queue_log(newest_first=True, limit=1)[0].id
        events = restore_agents(s, cfg, now=EPOCH + 1000)
        assert events == restore_events(snap, cfg)
        # the previous run is closed in the records: sessions end, nobody is left logged in
        assert s.restore_snapshot() == {}
        closing = s.queue_log(cursor=last_id)
        assert {(r.agent, r.queue, r.event) for r in closing} == {
            (a, "support", "REMOVEMEMBER") for a in set(AGENTS) - {"gone"}}
        assert all(r.time == int(EPOCH) + 1000 for r in closing)
        leaving = s.agent_states(agent="leaving", limit=1)[0].record
        assert (leaving.from_state, leaving.to_state, leaving.reason) == (
            "on-call", "logged-out", "restart")
        d = Driver(cfg, s, epoch=EPOCH + 1000)
        for ev in events:
            d.send(ev, 0.0)
        assert d.state("avail") == ("available", "", False)
        assert d.state("oncall") == ("available", "", False)
        assert d.state("lunch") == ("break", "lunch", False)
        assert d.state("dropped") == ("break", "lunch", False)
        assert d.state("pausing") == ("break", "training", False)
        assert d.state("difficult") == ("break", "recovery", False)
        assert d.state("leaving")[0] == "logged-out" and d.state("gone")[0] == "logged-out"
        # nobody is offered a call before reconnecting
        d.send(CallEnters("new1", "support"), 1.0)
        assert d.engine.call_view("new1").agent == ""  # type: ignore[union-attr]
        d.send(AgentConnectionRestored("avail"), 2.0)  # back: offered the waiting call
        assert d.state("avail") == ("reserved", "", True)
        assert d.engine.agent_view("avail").call == "new1"
        # the others never came back: the grace runs out as for any dropped connection
        d.engine.handle_timer(40.0)
        s.write_all(d.engine.actions())
        assert d.state("oncall")[0] == "logged-out" and d.state("lunch")[0] == "logged-out"
        snap2 = s.restore_snapshot()
    assert set(snap2) == {"avail"}  # and a second restart restores only her


def test_restore_with_a_changed_config(caplog: pytest.LogCaptureFixture) -> None:
    snap: dict[str, AgentStateRecord] = {
        "x": state(1, "x", "available", "break", "yoga"),
        "removed": state(1, "removed", "logged-out", "available", "login"),
    }
    cfg = _config({"x": {"queues": {"support": 1}}})
    events = restore_events(snap, cfg)
    assert events == [AgentLogin("x"), AgentBreak("x", "disconnected"), AgentConnectionLost("x")]
    assert "no longer configured" in caplog.text
