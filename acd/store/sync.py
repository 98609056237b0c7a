"""Between the store and the engine: agent accounts from the config, agents' state at restart.

**Accounts from the config.** :func:`sync_agents_from_config` creates an account for every
``[agents.NAME]`` and keeps its display name equal to the config's ``name``. The config's
``password_hash`` (optional) is applied when the account is created and whenever the file's
value changes (the last applied value is kept in ``config_password_hash``); an unchanged
file never undoes ``acd agents set-password``, and removing the key from the file keeps the
stored hash. Roles are not in the config (the engine config owns ``[agents.*]`` validation
and knows no ``roles`` key): new accounts get ``["agent"]``, and roles are managed with
``acd agents roles`` or :meth:`~acd.store.base.AgentAccounts.update_agent`. Accounts of
agents no longer in the config are kept (their CDRs name them) and reported.

**State at restart.** Calls do not survive a restart of the server: their SIP dialogs and
media are gone. :func:`restore_events` turns :meth:`restore_snapshot` into engine events
that bring every agent back as if its web connection had dropped at the restart:

=========================================  ==============================================
last state (and pending work)               events
=========================================  ==============================================
logged-out, or agent no longer configured   none
break(reason)                               login, break(reason), connection lost
available                                   login, connection lost
reserved / on-call / wrap-up, no pending    login, connection lost
… pending ``logout``                        none (the logout the agent asked for happens)
… pending ``break:X`` or ``recovery``       login, break(X / recovery), connection lost
=========================================  ==============================================

:func:`restore_agents` is what the server calls at start: it first closes the previous run
in the store — each agent of the snapshot gets an ``AgentStateRecord`` to ``logged-out``
(reason "restart", duration up to the restart, since the crash time is unknown) and a
queue_log ``REMOVEMEMBER`` for each queue it was still a member of, so that reports see
sessions end and a second restart does not resurrect anyone — then returns the events.

"Connection lost" starts the engine's ``connection_grace_s``: an agent whose browser
reconnects in time (``AgentConnectionRestored``) carries on — available, or on the same
break — and one who does not goes to ``disconnect_to`` exactly as without a restart. Nobody
is offered a call before reconnecting. A break reason missing from the new config becomes
"disconnected". Break timers (``auto_ready_s``) restart at the restore. Feed the events to
the engine before the server accepts calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from acd.engine.config import EngineConfig
from acd.engine.events import AgentBreak, AgentConnectionLost, AgentLogin, Event
from acd.engine.records import AgentStateRecord, QueueLogEntry
from acd.store.base import AgentAccounts, Store
from acd.store.passwords import argon2_available

__all__ = ["SyncReport", "sync_agents_from_config", "restore_agents", "restore_events",
           "close_previous_run", "WORKING_STATES"]

log = logging.getLogger(__name__)

WORKING_STATES = ("reserved", "on-call", "wrap-up")
FALLBACK_BREAK = "disconnected"
RESTART_REASON = "restart"
MEMBERSHIP_SCAN = 1000  # queue_log rows looked at per agent and event


@dataclass(frozen=True)
class SyncReport:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    not_in_config: tuple[str, ...] = ()


def sync_agents_from_config(store: AgentAccounts, config: EngineConfig, *,
                            now: float | None = None) -> SyncReport:
    """Create or update the accounts of the config's agents (see the module docstring)."""
    stamp = time.time() if now is None else now
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for agent_id, cfg in config.agents.items():
        name = cfg.name or agent_id
        pw = cfg.password_hash
        if pw.startswith("$argon2") and not argon2_available():
            log.warning("agent %s: argon2 password_hash cannot be verified without argon2-cffi; "
                        "set an scrypt one with 'acd agents set-password'", agent_id)
        account = store.get_agent(agent_id)
        if account is None:
            store.create_agent(agent_id, display_name=name, password_hash=pw,
                               config_password_hash=pw, now=stamp)
            created.append(agent_id)
            continue
        changes: dict[str, object] = {}
        if account.display_name != name:
            changes["display_name"] = name
        if pw != account.config_password_hash:
            changes["config_password_hash"] = pw
            if pw:  # a new hash in the file replaces the stored one
                changes["password_hash"] = pw
        if changes:
            store.update_agent(agent_id, now=stamp, **changes)
            updated.append(agent_id)
            if "password_hash" in changes:
                log.info("agent %s: password hash taken from the config file", agent_id)
        else:
            unchanged.append(agent_id)
    extra = tuple(a.id for a in store.list_agents() if a.id not in config.agents)
    if extra:
        log.info("agent accounts not in the config (kept): %s", ", ".join(extra))
    return SyncReport(tuple(created), tuple(updated), tuple(unchanged), extra)


def restore_events(snapshot: Mapping[str, AgentStateRecord],
                   config: EngineConfig) -> list[Event]:
    """Engine events that restore the agents of ``snapshot`` (see the module docstring)."""
    events: list[Event] = []
    for agent_id, rec in sorted(snapshot.items()):
        if agent_id not in config.agents:
            log.warning("agent %s was %s before the restart but is no longer configured",
                        agent_id, rec.to_state)
            continue
        brk = _break_after_restart(rec)
        if brk is None:
            continue
        if brk and brk not in config.breaks:
            log.warning("agent %s: break reason %r no longer configured; restored as %r",
                        agent_id, brk, FALLBACK_BREAK)
            brk = FALLBACK_BREAK
        events.append(AgentLogin(agent_id))
        if brk:
            events.append(AgentBreak(agent_id, brk))
        events.append(AgentConnectionLost(agent_id))
        log.info("agent %s restored (was %s%s)", agent_id, rec.to_state,
                 f", break {brk}" if brk else "")
    return events


def _break_after_restart(rec: AgentStateRecord) -> str | None:
    """None: stay logged out; "": logged in; else the break to restore."""
    state, pending = rec.to_state, rec.pending
    if state == "logged-out":
        return None
    if state == "break":
        return rec.reason or FALLBACK_BREAK
    if state in WORKING_STATES:
        if pending == "logout":
            return None
        if pending.startswith("break:"):
            return pending.removeprefix("break:")
        if pending == "recovery":
            return "recovery"
    return ""


def restore_agents(store: Store, config: EngineConfig, *, now: float | None = None) -> list[Event]:
    """At server start: close the previous run in ``store`` and return the engine events
    that restore the agents (see the module docstring)."""
    snapshot = store.restore_snapshot()
    close_previous_run(store, snapshot, time.time() if now is None else now)
    return restore_events(snapshot, config)


def close_previous_run(store: Store, snapshot: Mapping[str, AgentStateRecord],
                       now: float) -> int:
    """Log out (in the records only) every agent of ``snapshot``; returns the records written."""
    records: list[object] = []
    for agent_id, rec in sorted(snapshot.items()):
        added = _last_ids(store, agent_id, "ADDMEMBER")
        removed = _last_ids(store, agent_id, "REMOVEMEMBER")
        for queue in sorted(q for q, i in added.items() if i > removed.get(q, 0)):
            records.append(QueueLogEntry(now, "", queue, agent_id, "REMOVEMEMBER"))
        records.append(AgentStateRecord(now, agent_id, rec.to_state, "logged-out", RESTART_REASON,
                                        max(0.0, now - rec.time), "", rec.call_id, rec.test))
    if records:
        store.write_all(records)
        log.info("previous run closed: %d agent(s) logged out in the records", len(snapshot))
    return len(records)


def _last_ids(store: Store, agent_id: str, event: str) -> dict[str, int]:
    """The row id of the agent's latest ``event`` per queue (within the last rows)."""
    out: dict[str, int] = {}
    for r in store.queue_log(agent=agent_id, event=event, newest_first=True,
                             limit=MEMBERSHIP_SCAN):
        out[r.queue] = max(out.get(r.queue, 0), r.id)
    return out
