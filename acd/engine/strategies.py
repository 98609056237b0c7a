"""Distribution strategies: which available agent a waiting call is offered to.

A strategy is one registered class::

    @register_strategy("longest-idle")
    class LongestIdle(Strategy):
        def order(self, queue, call, candidates, now):
            return sorted(candidates, key=lambda a: (a.available_since, a.index))

``order`` returns the candidates best first; the engine offers the call to the first one
(or to all of them for a ``ring_all`` strategy). The candidates are the queue's routable
members whose effective level the call accepts, minus the agents who declined it recently.

A strategy whose order is a fixed per-agent key while the agent stays available may set
``indexed = True`` and implement ``key``: the engine then keeps each queue's available agents
in a heap by that key and finds the best one without sorting (``order`` must agree with it;
a test checks that). Agent figures used here are global, not per queue (an agent in several
queues is compared on all the work they did): ``available_since`` (entered "available"),
``calls_answered``, ``talk_s`` and ``index`` (position in the ``[agents]`` table).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from acd.engine.core import Agent, Call
    from acd.engine.queues import QueueState

__all__ = ["Strategy", "register_strategy", "strategy_class", "strategy_names"]

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type[Strategy]] = {}
S = TypeVar("S", bound="type[Strategy]")


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator: make the strategy available as ``strategy = name`` in queue config."""

    def deco(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"strategy {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def strategy_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    return _REGISTRY[name]


class Strategy:
    """Base of the strategies; one instance per queue, with the engine's seeded RNG."""

    name: ClassVar[str] = ""
    ring_all: ClassVar[bool] = False  # offer to every candidate at once; first answer wins
    indexed: ClassVar[bool] = False  # key() is fixed while an agent is available

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def order(self, queue: QueueState, call: Call, candidates: list[Agent],
              now: float) -> list[Agent]:
        raise NotImplementedError

    def key(self, queue: QueueState, agent: Agent) -> tuple[Any, ...]:
        """Sort key of an available agent (only for ``indexed`` strategies)."""
        raise NotImplementedError

    def offered(self, queue: QueueState, agent: Agent, call: Call, now: float) -> None:
        """Told after every offer (round-robin memory)."""


class _Keyed(Strategy):
    indexed = True

    def order(self, queue: QueueState, call: Call, candidates: list[Agent],
              now: float) -> list[Agent]:
        return sorted(candidates, key=lambda a: self.key(queue, a))


@register_strategy("longest-idle")
class LongestIdle(_Keyed):
    """The agent available the longest (Asterisk leastrecent, Connect/TaskRouter default)."""

    def key(self, queue: QueueState, agent: Agent) -> tuple[Any, ...]:
        return (agent.available_since, agent.index)


@register_strategy("fewest-calls")
class FewestCalls(_Keyed):
    """The agent who answered the fewest calls (all queues), then the longest idle."""

    def key(self, queue: QueueState, agent: Agent) -> tuple[Any, ...]:
        return (agent.calls_answered, agent.available_since, agent.index)


@register_strategy("least-talk-time")
class LeastTalkTime(_Keyed):
    """The agent with the least talk time so far (all queues), then the longest idle."""

    def key(self, queue: QueueState, agent: Agent) -> tuple[Any, ...]:
        return (agent.talk_s, agent.available_since, agent.index)


@register_strategy("linear")
class Linear(_Keyed):
    """Always the first available agent in the fixed member order (the ``[agents]`` order)."""

    def key(self, queue: QueueState, agent: Agent) -> tuple[Any, ...]:
        return (agent.index,)


@register_strategy("rrmemory")
class RoundRobinMemory(Strategy):
    """Round robin in member order, starting after the agent offered last in this queue."""

    def order(self, queue: QueueState, call: Call, candidates: list[Agent],
              now: float) -> list[Agent]:
        last = queue.rr_last
        return sorted(candidates, key=lambda a: (a.index <= last, a.index))

    def offered(self, queue: QueueState, agent: Agent, call: Call, now: float) -> None:
        queue.rr_last = agent.index


@register_strategy("random")
class RandomOrder(Strategy):
    """A uniformly random candidate, from the engine's seeded RNG (deterministic in tests)."""

    def order(self, queue: QueueState, call: Call, candidates: list[Agent],
              now: float) -> list[Agent]:
        out = sorted(candidates, key=lambda a: a.index)  # independent of set order
        self.rng.shuffle(out)
        return out


@register_strategy("ring-all")
class RingAll(Strategy):
    """Offer to every candidate at once; the first to answer gets the call."""

    ring_all = True

    def order(self, queue: QueueState, call: Call, candidates: list[Agent],
              now: float) -> list[Agent]:
        return sorted(candidates, key=lambda a: (a.available_since, a.index))
