"""Persistence: agents' accounts, CDRs, offers, Asterisk's queue_log and agent states.

:func:`open_store` opens the embedded SQLite store (``data_dir/homeline.db`` in WAL mode and
``data_dir/queue_log``); :mod:`acd.store.base` defines the interfaces another backend
implements, :mod:`acd.store.passwords` the password hashes, :mod:`acd.store.sync` the seeding
of accounts from the config and the restore of agents' state after a restart.
"""

from __future__ import annotations

from acd.store.base import (
    ROLES,
    AgentAccount,
    QueueLogRow,
    Row,
    Store,
    StoreError,
    open_store,
)
from acd.store.passwords import hash_password, needs_rehash, verify_password
from acd.store.sync import restore_agents, restore_events, sync_agents_from_config

__all__ = [
    "AgentAccount",
    "QueueLogRow",
    "ROLES",
    "Row",
    "Store",
    "StoreError",
    "hash_password",
    "needs_rehash",
    "open_store",
    "restore_agents",
    "restore_events",
    "sync_agents_from_config",
    "verify_password",
]
