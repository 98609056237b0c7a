"""Virtual-time driver for engine tests: no sleeping, no wall clock.

``Sim`` wraps an :class:`Engine`, keeps every action with the virtual time it was produced,
and moves time forward by firing the engine's timers one deadline at a time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from acd.engine.actions import Action
from acd.engine.config import EngineConfig, engine_config_from_toml
from acd.engine.engine import Engine
from acd.engine.events import Event
from acd.engine.records import AgentStateRecord, CallRecord, QueueLogEntry, format_queue_log_line

__all__ = ["Sim", "config", "EPOCH"]

EPOCH = 1_700_000_000.0
T = TypeVar("T", bound=Action)


def config(queues: Mapping[str, Any], agents: Mapping[str, Any],
           acd: Mapping[str, Any] | None = None) -> EngineConfig:
    return engine_config_from_toml(queues, agents, acd, file="test.toml")


class Sim:
    def __init__(self, cfg: EngineConfig, *, seed: int = 1, epoch: float = EPOCH,
                 check: bool = True) -> None:
        self.engine = Engine(cfg, rng=random.Random(seed), epoch=epoch)
        self.now = 0.0
        self.log: list[tuple[float, Action]] = []
        self.check = check

    # -- driving ----------------------------------------------------------------------

    def _collect(self) -> list[Action]:
        new = self.engine.actions()
        self.log.extend((self.now, a) for a in new)
        if self.check:
            self.engine.check_invariants()
        return new

    def send(self, event: Event, at: float | None = None) -> list[Action]:
        """Deliver ``event`` at ``at`` (default: now), after the timers due before it."""
        if at is not None:
            self.advance(at, inclusive=False)
            self.now = at
        self.engine.handle(event, self.now)
        return self._collect()

    def advance(self, to: float, *, inclusive: bool = True) -> list[Action]:
        """Fire every timer up to ``to`` (or strictly before it), one deadline at a time."""
        out: list[Action] = []
        while True:
            deadline = self.engine.get_timer()
            if deadline is None or deadline > to or (not inclusive and deadline == to):
                break
            self.now = deadline
            self.engine.handle_timer(deadline)
            out += self._collect()
        self.now = max(self.now, to)
        return out

    def run_out(self, limit: float = 1e7) -> None:
        """Fire timers until none is left (or ``limit``)."""
        while (deadline := self.engine.get_timer()) is not None and deadline <= limit:
            self.now = deadline
            self.engine.handle_timer(deadline)
            self._collect()

    # -- looking at the output ---------------------------------------------------------

    def of(self, kind: type[T], /, since: float = float("-inf"), **match: Any) -> list[T]:
        out = []
        for t, a in self.log:
            if t >= since and isinstance(a, kind) and all(getattr(a, k) == v for k, v in match.items()):
                out.append(a)
        return out

    def timed(self, kind: type[T], /, **match: Any) -> list[tuple[float, T]]:
        return [(t, a) for t, a in self.log if isinstance(a, kind)
                and all(getattr(a, k) == v for k, v in match.items())]

    def qlog(self, *events: str) -> list[str]:
        lines = []
        for _, a in self.log:
            if isinstance(a, QueueLogEntry) and (not events or a.event in events):
                lines.append(format_queue_log_line(a))
        return lines

    def state(self, agent: str) -> str:
        return self.engine.agent_view(agent).state

    def call_state(self, call: str) -> str | None:
        v = self.engine.call_view(call)
        return None if v is None else v.state

    def records(self) -> list[CallRecord]:
        return self.of(CallRecord)

    def transitions(self, agent: str) -> list[tuple[str, str]]:
        return [(r.to_state, r.reason) for r in self.of(AgentStateRecord, agent=agent)
                if r.from_state != r.to_state]

    def clear(self) -> None:
        self.log.clear()


def names(actions: Iterable[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]
