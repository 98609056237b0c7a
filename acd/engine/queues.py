"""Per-queue indexes: waiting calls by required level, present calls, available agents.

Calls are ordered by the entry ``(-(priority + weight), -boost, enter_time, seq, call)``: higher
priority first, then a requeued call (boost) ahead of its class, then the longest waiting;
``seq`` makes entries unique. Because the queue's ``weight`` is inside the key, the entries
of different queues compare directly: that is the cross-queue order an agent uses when it
frees up (see :mod:`acd.engine.routing`).

- ``tiers[(min_level, skills)]``: sorted lists of the routable calls (queued and
  callback-pending) by the level they currently require and the extra skills they need (from
  the IVR; usually none); a freed agent of level L looks only at the heads of the tiers it
  qualifies for (≤ L, and each extra skill at ≥ the tier's level): a few per queue.
- ``present``: every call in the queue (waiting, offered, callback) for positions.
- ``pools[level]``: routable member agents by effective level. For ``indexed`` strategies a
  pool also keeps a lazy heap by the strategy's key, so the best agent is found in
  O(log n) without sorting (:func:`acd.engine.routing.pick_agents`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acd.engine.config import QueueConfig
    from acd.engine.core import Agent, Call
    from acd.engine.strategies import Strategy

__all__ = ["QueueState", "Pool"]

log = logging.getLogger(__name__)

_n = itertools.count()


class Pool:
    """The routable members of one queue at one effective level."""

    __slots__ = ("queue", "members", "heap")

    def __init__(self, queue: QueueState) -> None:
        self.queue = queue
        self.members: dict[str, Agent] = {}
        self.heap: list[tuple[Any, int, Agent, int]] = []

    def add(self, agent: Agent) -> None:
        self.members[agent.id] = agent
        strategy = self.queue.strategy
        if strategy.indexed:
            if len(self.heap) > 2 * len(self.members) + 64:
                self._rebuild()
            heapq.heappush(self.heap, (strategy.key(self.queue, agent), next(_n), agent,
                                       agent.token))

    def remove(self, agent: Agent) -> None:
        self.members.pop(agent.id, None)  # its heap entry goes stale (token)

    def _live(self, entry: tuple[Any, int, Agent, int]) -> bool:
        agent = entry[2]
        return agent.token == entry[3] and self.members.get(agent.id) is agent

    def _rebuild(self) -> None:
        key = self.queue.strategy.key
        self.heap = [(key(self.queue, a), next(_n), a, a.token) for a in self.members.values()]
        heapq.heapify(self.heap)

    def best(self, ok: Callable[[Agent], bool] | None) -> tuple[Any, Agent] | None:
        """(key, agent) of the best member ``ok`` accepts (indexed strategies only)."""
        heap = self.heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        if not heap:
            return None
        if ok is None or ok(heap[0][2]):
            return heap[0][0], heap[0][2]
        for entry in sorted(heap):  # the best one declined this call: rare
            if self._live(entry) and ok(entry[2]):
                return entry[0], entry[2]
        return None


class QueueState:
    """One queue's runtime state."""

    def __init__(self, cfg: QueueConfig, strategy: Strategy) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.strategy = strategy
        self.floor_level = cfg.floor_level
        self.tiers: dict[tuple[int, tuple[str, ...]], list[tuple[Any, ...]]] = {}
        self.present: list[tuple[Any, ...]] = []
        self.pools: dict[int, Pool] = {}
        self.levels_desc: list[int] = []
        self.logged_in = 0  # logged-in members able to serve (level >= floor)
        self.staffed = 0  # ... and not on break
        self.available = 0  # routable members (any level)
        self.rr_last = -1  # rrmemory: index of the agent offered last

    # -- calls ------------------------------------------------------------------------

    def entry_for(self, call: Call) -> tuple[Any, ...]:
        return (-(call.priority + self.cfg.weight), -call.boost, call.enter_time, call.seq, call)

    def add_present(self, call: Call) -> None:
        assert call.entry is not None
        insort(self.present, call.entry)

    def remove_present(self, call: Call) -> None:
        _remove(self.present, call.entry)

    def position(self, call: Call) -> int:
        """1-based position among the calls present in the queue."""
        return bisect_left(self.present, call.entry) + 1

    def add_waiting(self, call: Call) -> None:
        key = (call.min_level, call.skills)
        tier = self.tiers.get(key)
        if tier is None:
            tier = self.tiers[key] = []
        insort(tier, call.entry)

    def remove_waiting(self, call: Call) -> None:
        _remove(self.tiers[(call.min_level, call.skills)], call.entry)

    def waiting(self) -> int:
        return sum(len(t) for t in self.tiers.values())

    def best_waiting_for(self, agent: Agent, level: int, now: float) -> tuple[Any, ...] | None:
        """The first waiting call ``agent`` (effective ``level``) may take, by entry order."""
        best = None
        for (tier_level, skills), entries in self.tiers.items():
            if tier_level > level or not entries:
                continue
            if skills and any(agent.cfg.skills.get(s, 0) < tier_level for s in skills):
                continue
            for entry in entries:
                declined = entry[4].declined
                if declined and declined.get(agent.id, -1.0) > now:
                    continue
                if best is None or entry < best:
                    best = entry
                break
        return best

    # -- available agents -------------------------------------------------------------

    def pool_add(self, agent: Agent, level: int) -> None:
        pool = self.pools.get(level)
        if pool is None:
            pool = self.pools[level] = Pool(self)
            self.levels_desc = sorted(self.pools, reverse=True)
        pool.add(agent)
        self.available += 1

    def pool_remove(self, agent: Agent, level: int) -> None:
        self.pools[level].remove(agent)
        self.available -= 1

    def routable_members(self) -> list[Agent]:
        return [a for pool in self.pools.values() for a in pool.members.values()]


def _remove(entries: list[tuple[Any, ...]], entry: tuple[Any, ...] | None) -> None:
    i = bisect_left(entries, entry)
    if i >= len(entries) or entries[i][3] != entry[3]:  # type: ignore[index]
        raise ValueError(f"queue entry {entry!r} is not in its list")
    del entries[i]
