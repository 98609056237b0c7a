"""Persistence through the running server: CDRs and the Asterisk queue_log survive kill -9,
and a restart restores the agents."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import PEER, ROOT, RunningServer, start_server
from tests.test_acd_server import ACD, agent

pytestmark = pytest.mark.interop


def cdrs(srv: RunningServer) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "acd.cli", "cdr", "--config", str(srv.config), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=20)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data if isinstance(data, list) else data.get("calls", data.get("rows", []))


def test_cdrs_and_queue_log_survive_kill_9_and_agents_come_back(server_factory, tmp_path: Path) -> None:
    srv = server_factory(acd=ACD)
    for _ in range(3):
        out = subprocess.run([sys.executable, str(PEER), "call", "--uri", srv.uri("support"), "--codec", "PCMU",
                              "--duration", "1"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert json.loads(out.stdout.strip().splitlines()[-1])["answered"]
    srv.wait_log(r"COMPLETECALLER", count=3)
    assert agent(srv, "alice", "login")["agent"] == "alice"
    agent(srv, "alice", "ready")
    srv.stop(signal.SIGKILL)  # no clean shutdown at all
    queue_log = (srv.data_dir / "queue_log").read_text().splitlines()
    # Asterisk's format: epoch|callid|queue|agent|EVENT|data...
    events = [line.split("|")[4] for line in queue_log]
    assert events.count("ENTERQUEUE") == 3 and events.count("CONNECT") == 3 and events.count("COMPLETECALLER") == 3
    assert all(line.split("|")[0].isdigit() for line in queue_log)
    again = start_server(srv.config.parent, acd=ACD)  # same data directory, new ports
    try:
        rows = cdrs(again)
        assert len([r for r in rows if r.get("outcome") == "answered"]) == 3, rows
        state = again.status()["acd"]["agents"]["alice"]["state"]
        assert state != "logged-out", state  # restored, waiting for her client to reconnect
        with sqlite3.connect(again.data_dir / "homeline.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        again.stop()
