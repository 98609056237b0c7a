"""The store's ``acd`` subcommands: ``acd agents list|set-password|roles`` and ``acd cdr``.

Each opens the store in the config's ``server.data_dir`` (without the queue_log file, which
only the server writes) next to a running server if there is one (WAL allows it). The
``agents`` commands first apply the config's ``[agents.*]`` to the accounts (as the server
does at start), so a freshly configured agent can be given a password before the first
start. A password is read from standard input (first line) or, on a terminal, prompted for
twice; it is never an argument, so it never shows in ``ps`` or the shell history.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from acd.errors import AcdError

__all__ = ["add_commands"]

log = logging.getLogger(__name__)


def add_commands(sub: Any) -> None:
    """Register ``agents`` and ``cdr`` on the ``acd`` parser's subparsers."""
    ag = sub.add_parser("agents", help="agent accounts: list, passwords, roles").add_subparsers(
        dest="action", required=True)
    al = ag.add_parser("list", help="list the agent accounts (config agents are added first)")
    al.add_argument("--config", default="config/demo.toml")
    al.add_argument("--json", action="store_true")
    al.set_defaults(func=cmd_agents_list)
    ap = ag.add_parser("set-password", help="set an agent's password, read from stdin or "
                                            "prompted for (never given as an argument)")
    ap.add_argument("--config", default="config/demo.toml")
    ap.add_argument("name")
    ap.set_defaults(func=cmd_agents_set_password)
    ar = ag.add_parser("roles", help="set an agent's roles (agent, supervisor, admin)")
    ar.add_argument("--config", default="config/demo.toml")
    ar.add_argument("name")
    ar.add_argument("roles", help="comma-separated, e.g. agent,supervisor")
    ar.set_defaults(func=cmd_agents_roles)
    cd = sub.add_parser("cdr", help="print recent call detail records, newest first")
    cd.add_argument("--config", default="config/demo.toml")
    cd.add_argument("--since", help="calls that entered at or after this ISO time "
                                    "(local time unless it has an offset)")
    cd.add_argument("--queue")
    cd.add_argument("--agent")
    cd.add_argument("--limit", type=int, default=50)
    cd.add_argument("--json", action="store_true", help="a JSON array of CDR objects")
    cd.set_defaults(func=cmd_cdr)


def _open(config_path: str, *, sync_agents: bool) -> Any:
    from acd.config import load_config
    from acd.store import open_store, sync_agents_from_config

    config = load_config(config_path)
    store = open_store(config.server.data_dir, queue_log_file=False)
    if sync_agents:
        try:
            sync_agents_from_config(store, _engine_config(config))
        except BaseException:
            store.close()
            raise
    return store


def _engine_config(config: Any) -> Any:
    engine = getattr(config, "engine", None)
    if engine is None:  # a Config without the validated engine part
        from acd.engine.config import engine_config_from_toml

        engine = engine_config_from_toml(config.queues, config.agents,
                                         getattr(config, "acd", None), file=str(config.file))
    return engine


def _status(account: Any, now: float) -> str:
    if account.disabled:
        return "disabled"
    if account.locked(now):
        return "locked until " + datetime.fromtimestamp(account.locked_until).isoformat(
            timespec="seconds")
    return "no password" if not account.password_hash else "ok"


def cmd_agents_list(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args.config, sync_agents=True) as store:
        accounts = store.list_agents()
    if args.json:
        out = [{"id": a.id, "name": a.display_name, "roles": list(a.roles),
                "password_set": bool(a.password_hash), "disabled": a.disabled,
                "failed_logins": a.failed_logins, "locked_until": a.locked_until,
                "status": _status(a, now)} for a in accounts]
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    rows = [("ID", "NAME", "ROLES", "STATUS")]
    rows += [(a.id, a.display_name, ",".join(a.roles), _status(a, now)) for a in accounts]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3] + "\n")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Repeat it: "):
            raise AcdError("the passwords differ; nothing changed")
        return first
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def cmd_agents_set_password(args: argparse.Namespace) -> int:
    from acd.store import hash_password

    with _open(args.config, sync_agents=True) as store:
        if store.get_agent(args.name) is None:
            raise AcdError(f"no agent {args.name!r} (agents come from [agents.NAME] in the config)")
        password = _read_password()
        if not password:
            raise AcdError("empty password; nothing changed")
        store.update_agent(args.name, password_hash=hash_password(password), failed_logins=0,
                           locked_until=None)
    sys.stdout.write(f"{args.name}: password set\n")
    return 0


def cmd_agents_roles(args: argparse.Namespace) -> int:
    from acd.store.base import normalize_roles

    roles = normalize_roles(args.roles)
    with _open(args.config, sync_agents=True) as store:
        if store.get_agent(args.name) is None:
            raise AcdError(f"no agent {args.name!r} (agents come from [agents.NAME] in the config)")
        account = store.update_agent(args.name, roles=roles)
    sys.stdout.write(f"{account.id}: roles {','.join(account.roles)}\n")
    return 0


def _parse_since(text: str) -> float:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AcdError(f"--since {text!r}: not an ISO date or time (2024-05-01T08:00)") from None
    return when.timestamp()  # naive: local time


def _iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t).isoformat(timespec="seconds")


def cmd_cdr(args: argparse.Namespace) -> int:
    since = _parse_since(args.since) if args.since else None
    if not 1 <= args.limit <= 10_000:
        raise AcdError("--limit must be 1..10000")
    with _open(args.config, sync_agents=False) as store:
        rows = store.calls(since=since, queue=args.queue, agent=args.agent, limit=args.limit)
    if args.json:
        out = [{"id": r.id, **asdict(r.record)} for r in rows]
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    header = ("ENTERED", "CALL", "QUEUE", "CALLER", "AGENT", "OUTCOME", "WAIT", "TALK")
    lines = [header] + [(_iso(r.record.entered_at), r.record.call_id, r.record.queue,
                         r.record.caller, r.record.agent or "-", r.record.outcome,
                         f"{r.record.wait_s:.0f}", f"{r.record.talk_s:.0f}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n")
    if not rows:
        sys.stdout.write("(no calls)\n")
    return 0
