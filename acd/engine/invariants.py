"""``Engine.check_invariants()``: the model's consistency rules, checked exhaustively.

Used by the tests after every step (the cost is linear in agents, calls and timers):

- an agent is on at most one call and holds at most one offer; a reserved agent points to
  an offered call that points back, and has a pending ring timeout; an agent on a call
  points to a connected call that points back; wrap-up and auto-ending breaks have timers;
  a disconnected, logged-in agent has a grace timer;
- every live call is in exactly one place (waiting in exactly one tier of its own queue and
  in its queue's positions, offered, or connected); ended calls hold nothing;
- queue counters and available-agent pools match the agents' states;
- a connected or waiting call with a caller leg is watched by the reconciliation timer;
- routing is settled: no waiting call has an available agent able to take it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from acd.engine.core import AGENT_STATES, CALL_STATES, Agent, Call, InvariantViolation
from acd.engine.routing import pick_agents

if TYPE_CHECKING:
    from acd.engine.engine import Engine

__all__ = ["check_invariants"]

log = logging.getLogger(__name__)

WAITING = ("queued", "callback-pending")


def _fail(text: str) -> None:
    raise InvariantViolation(text)


def check_invariants(engine: Engine) -> None:
    armed = {(id(owner), kind) for deadline, _, owner, kind in engine._heap
             if owner.timers.get(kind) == deadline}

    def timer(owner: Agent | Call, kind: str) -> bool:
        return kind in owner.timers and (id(owner), kind) in armed

    _check_agents(engine, timer)
    _check_pools(engine)
    _check_calls(engine, timer)
    _check_queues(engine)
    _check_settled(engine)


def _check_agents(engine: Engine, timer: object) -> None:
    has = timer  # type: ignore[assignment]
    for a in engine.agents.values():
        where = f"agent {a.id} ({a.state})"
        if a.state not in AGENT_STATES:
            _fail(f"{where}: unknown state")
        if (a.state == "reserved") != (a.offer is not None):
            _fail(f"{where}: offer {a.offer!r} does not match the state")
        if a.offer is not None:
            c = a.offer.call
            if c.state != "offered" or c.offers.get(a.id) is not a.offer:
                _fail(f"{where}: offered call {c.id} ({c.state}) does not point back")
            if not has(a, "ring"):  # type: ignore[operator]
                _fail(f"{where}: reservation without a ring timeout")
        if a.state in ("on-call", "wrap-up") and a.call is None:
            _fail(f"{where}: no call")
        if a.state not in ("on-call", "wrap-up") and a.call is not None:
            _fail(f"{where}: still points to call {a.call.id}")
        if a.state == "on-call":
            assert a.call is not None
            if a.call.state != "connected" or a.call.agent is not a:
                _fail(f"{where}: call {a.call.id} ({a.call.state}) does not point back")
        if a.state == "wrap-up" and not has(a, "wrapup"):  # type: ignore[operator]
            _fail(f"{where}: wrap-up without a timer")
        if a.state == "break" and engine.cfg.breaks[a.reason].auto_ready_s > 0 \
                and not has(a, "break"):  # type: ignore[operator]
            _fail(f"{where}: break {a.reason} without its auto-ready timer")
        if a.state == "logged-out":
            if a.levels or a.timers or a.pending():
                _fail(f"{where}: logged out with queues, timers or pending work")
        elif not a.connected and a.state != "break" and not has(a, "grace"):  # type: ignore[operator]
            _fail(f"{where}: disconnected without a grace timer")
        logged = a.state != "logged-out"
        expect = (logged, logged and a.state != "break", a.routable)
        if a.applied != expect:
            _fail(f"{where}: applied {a.applied} != {expect}")
        for qname, level in a.levels.items():
            pool = engine.queues[qname].pools.get(level)
            inside = pool is not None and pool.members.get(a.id) is a
            if inside != a.routable:
                _fail(f"{where}: in pool {qname}/{level} = {inside}, routable = {a.routable}")


def _check_pools(engine: Engine) -> None:
    for q in engine.queues.values():
        for level, pool in q.pools.items():
            for aid, a in pool.members.items():
                if a.id != aid or a.levels.get(q.name) != level or not a.routable:
                    _fail(f"agent {aid} ({a.state}): stray member of pool {q.name}/{level}")


def _check_calls(engine: Engine, timer: object) -> None:
    has = timer  # type: ignore[assignment]
    connected_by: Counter[str] = Counter()
    places: Counter[int] = Counter()
    for q in engine.queues.values():
        for e in q.present:
            places[id(e[4])] += 1
            if e[4].queue != q.name:
                _fail(f"call {e[4].id} present in {q.name} but belongs to {e[4].queue}")
        for (level, skills), entries in q.tiers.items():
            for e in entries:
                c = e[4]
                if c.queue != q.name or (c.min_level, c.skills) != (level, skills) or \
                        c.state not in WAITING:
                    _fail(f"call {c.id} ({c.state}) misfiled in {q.name} tier {level}")
                places[id(c)] += 10
    reconcile = engine.cfg.reconcile_after_s > 0
    for c in engine.calls.values():
        where = f"call {c.id} ({c.state})"
        if c.state not in CALL_STATES or c.state in ("ended", "ivr"):
            _fail(f"{where}: not a live state")
        expect = {"queued": 11, "callback-pending": 11, "callback-retry": 1, "offered": 1,
                  "connected": 0}[c.state]
        if places[id(c)] != expect:
            _fail(f"{where}: found {places[id(c)]} (tiers x10 + positions), expected {expect}")
        if c.state == "offered":
            if not c.offers:
                _fail(f"{where}: no offers")
            for aid, o in c.offers.items():
                if o.agent.id != aid or o.agent.offer is not o or o.agent.state != "reserved":
                    _fail(f"{where}: offer to {aid} not held by the agent")
        elif c.offers:
            _fail(f"{where}: offers {list(c.offers)} outside the offered state")
        if c.state == "connected":
            if c.agent is None or c.agent.call is not c or c.agent.state != "on-call":
                _fail(f"{where}: agent does not point back")
            connected_by[c.agent.id] += 1
        elif c.agent is not None:
            _fail(f"{where}: has agent {c.agent.id}")
        if c.leg_up != (c.state not in ("callback-pending", "callback-retry")) and c.state != "offered":
            _fail(f"{where}: leg_up={c.leg_up}")
        if reconcile and c.leg_up and not has(c, "reconcile"):  # type: ignore[operator]
            _fail(f"{where}: not watched by reconciliation")
        if c.state in WAITING or c.state == "offered":
            q = engine.queues[c.queue]
            if c.widen_step < len(q.cfg.skill_widening) and not has(c, "widen"):  # type: ignore[operator]
                _fail(f"{where}: skill widening without a timer")
            if c.state == "queued" and q.cfg.max_wait_s > 0 and not has(c, "max_wait"):  # type: ignore[operator]
                _fail(f"{where}: no max-wait timer")
            if c.state == "callback-pending" and not has(c, "callback_expire"):  # type: ignore[operator]
                _fail(f"{where}: callback without expiry")
        if c.state == "callback-retry" and not (has(c, "callback_retry") and has(c, "callback_expire")):  # type: ignore[operator]
            _fail(f"{where}: callback retry without its timers")
    for c in engine.ended.values():
        if c.state != "ended" or c.timers or c.offers or c.agent is not None:
            _fail(f"ended call {c.id}: still holds state")
        if places[id(c)]:
            _fail(f"ended call {c.id}: still in a queue")
    for aid, n in connected_by.items():
        if n > 1:
            _fail(f"agent {aid} is on {n} calls")


def _check_queues(engine: Engine) -> None:
    counts: dict[str, list[int]] = {name: [0, 0, 0] for name in engine.queues}
    for a in engine.agents.values():
        for qname, level in a.levels.items():
            c = counts[qname]
            c[2] += a.routable
            if level >= engine.queues[qname].floor_level and a.state != "logged-out":
                c[0] += 1
                c[1] += a.state != "break"
    for q in engine.queues.values():
        expect = tuple(counts[q.name])
        if (q.logged_in, q.staffed, q.available) != expect:
            _fail(f"queue {q.name}: counters {(q.logged_in, q.staffed, q.available)} != {expect}")


def _check_settled(engine: Engine) -> None:
    now = engine.now
    for q in engine.queues.values():
        for entries in q.tiers.values():
            for e in entries:
                targets = pick_agents(q, e[4], now)
                if targets:
                    _fail(f"call {e[4].id} waits in {q.name} while {targets[0].id} could take it")
