"""``acd agents ...`` and ``acd cdr`` through ``python -m acd.cli``, on a temporary config."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from acd.store import hash_password, open_store, verify_password

from tests.store.records import EPOCH, cdr

ROOT = Path(__file__).resolve().parents[2]
ALICE_PW = "alice-initial"


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password(ALICE_PW)


@pytest.fixture
def cfg(tmp_path: Path, alice_hash: str) -> Path:
    path = tmp_path / "homeline.toml"
    path.write_text(f"""
[server]
data_dir = "data"

[queues.support]
[queues.sales]

[agents.alice]
name = "Alice Martin"
password_hash = "{alice_hash}"
queues = {{support = 1}}

[agents.bob]
queues = {{support = 1, sales = 2}}
""")
    return path


def acd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acd.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_agents_list(cfg: Path) -> None:
    r = acd("agents", "list", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLES", "STATUS"]
    assert lines[1].split() == ["alice", "Alice", "Martin", "agent", "ok"]
    assert lines[2].split() == ["bob", "bob", "agent", "no", "password"]
    assert "$scrypt$" not in r.stdout  # hashes are never printed
    assert (cfg.parent / "data" / "homeline.db").exists()
    r = acd("agents", "list", "--config", str(cfg), "--json")
    out = json.loads(r.stdout)
    assert [(a["id"], a["name"], a["roles"], a["password_set"]) for a in out] == [
        ("alice", "Alice Martin", ["agent"], True), ("bob", "bob", ["agent"], False)]


def test_set_password_from_stdin(cfg: Path, alice_hash: str) -> None:
    r = acd("agents", "set-password", "--config", str(cfg), "bob", stdin="bob's s3cret|x\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bob: password set\n"
    r = acd("agents", "set-password", "--config", str(cfg), "alice", stdin="new-alice\r\n")
    assert r.returncode == 0, r.stderr
    with open_store(cfg.parent / "data", queue_log_file=False) as s:
        bob = s.get_agent("bob")
        alice = s.get_agent("alice")
    assert bob is not None and verify_password("bob's s3cret|x", bob.password_hash)
    assert alice is not None and verify_password("new-alice", alice.password_hash)
    assert not verify_password(ALICE_PW, alice.password_hash)
    assert alice.config_password_hash == alice_hash  # the unchanged config will not undo it
    r = acd("agents", "list", "--config", str(cfg))  # syncs the config again
    with open_store(cfg.parent / "data", queue_log_file=False) as s:
        alice = s.get_agent("alice")
    assert alice is not None and verify_password("new-alice", alice.password_hash)


def test_set_password_refusals(cfg: Path) -> None:
    r = acd("agents", "set-password", "--config", str(cfg), "bob", stdin="\n")
    assert r.returncode == 1 and "empty password" in r.stderr
    r = acd("agents", "set-password", "--config", str(cfg), "carol", stdin="pw\n")
    assert r.returncode == 1 and "no agent 'carol'" in r.stderr
    r = acd("agents", "set-password", "--config", str(cfg), "bob", "pw")  # no password argument
    assert r.returncode == 2
    r = acd("agents", "list", "--config", str(cfg), "--json")
    assert [a["password_set"] for a in json.loads(r.stdout)] == [True, False]


def test_roles(cfg: Path) -> None:
    r = acd("agents", "roles", "--config", str(cfg), "bob", "supervisor,agent")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bob: roles agent,supervisor\n"
    r = acd("agents", "roles", "--config", str(cfg), "bob", "agent,boss")
    assert r.returncode == 1 and "unknown role(s) boss" in r.stderr
    r = acd("agents", "roles", "--config", str(cfg), "nobody", "agent")
    assert r.returncode == 1 and "no agent" in r.stderr
    out = json.loads(acd("agents", "list", "--config", str(cfg), "--json").stdout)
    assert {a["id"]: a["roles"] for a in out} == {"alice": ["agent"], "bob": ["agent", "supervisor"]}


def test_cdr(cfg: Path) -> None:
    with open_store(cfg.parent / "data") as s:
        for i in range(1, 6):
            s.write(cdr(i * 3600, queue="sales" if i == 4 else "support"))
    r = acd("cdr", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [c["call_id"] for c in out] == [cdr(i * 3600).call_id for i in (5, 4, 3, 2, 1)]
    assert out[0]["overflowed_from"] == [] and out[0]["answered_at"] == EPOCH + 5 * 3600 + 12.25
    r = acd("cdr", "--config", str(cfg), "--json", "--queue", "sales")
    assert [c["call_id"] for c in json.loads(r.stdout)] == [cdr(4 * 3600).call_id]
    since = datetime.fromtimestamp(EPOCH + 3 * 3600).isoformat()  # local time, as typed
    r = acd("cdr", "--config", str(cfg), "--json", "--since", since)
    assert len(json.loads(r.stdout)) == 3
    r = acd("cdr", "--config", str(cfg), "--since", since, "--queue", "support")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ENTERED", "CALL", "QUEUE", "CALLER", "AGENT", "OUTCOME", "WAIT",
                                "TALK"]
    assert len(lines) == 3 and lines[1].split()[1:] == [cdr(5 * 3600).call_id, "support",
                                                        "5550018000", "alice", "answered", "12",
                                                        "88"]
    r = acd("cdr", "--config", str(cfg), "--since", "yesterday")
    assert r.returncode == 1 and "--since" in r.stderr
    r = acd("cdr", "--config", str(cfg), "--queue", "none")
    assert r.returncode == 0 and "(no calls)" in r.stdout


def test_bad_config_is_reported(tmp_path: Path) -> None:
    r = acd("agents", "list", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 1 and "no such file" in r.stderr
