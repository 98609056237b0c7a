"""The driving interface: handle/actions/get_timer/handle_timer, views, misuse errors."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass

import pytest

from acd.engine import Engine, EngineError
from acd.engine.actions import OfferCall, StartMusic
from acd.engine.core import ClockError, DuplicateCall, UnknownQueue
from acd.engine.events import AgentLogin, CallEnters, Event, OfferAnswered
from acd.engine.records import AgentStateRecord, QueueLogEntry

from tests.engine.helpers import Sim, config

CFG = config({"q": {"wrapup_s": 5, "ring_timeout_s": 10}, "r": {"strategy": "ring-all"}},
             {"a": {"queues": {"q": 2, "r": 1}, "name": "Ann"}, "b": {"queues": {"r": 2}}},
             {"reconcile_after_s": 0})


def test_sans_io_loop() -> None:
    e = Engine(CFG, epoch=1000.0)
    assert e.get_timer() is None and e.actions() == []
    e.handle(AgentLogin("a"), 5)
    e.handle(CallEnters("c1", "q", caller="555"), 6)
    acts = e.actions()
    assert [type(a).__name__ for a in acts] == [
        "QueueLogEntry", "QueueLogEntry", "AgentStateRecord", "QueueLogEntry", "StartMusic",
        "OfferCall", "AgentStateRecord", "Ringback"]
    assert acts[0] == QueueLogEntry(1005.0, "NONE", "q", "a", "ADDMEMBER")
    assert e.actions() == []  # drained
    assert e.get_timer() == 16.0  # the ring timeout
    e.handle_timer(15.9)
    assert e.actions() == []
    e.handle_timer(16.0)
    assert any(isinstance(a, AgentStateRecord) and a.to_state == "available" for a in e.actions())


def test_events_and_actions_are_frozen() -> None:
    ev = CallEnters("c1", "q")
    with pytest.raises(FrozenInstanceError):
        ev.queue = "r"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        StartMusic("c", "m").music = "x"  # type: ignore[misc]


def test_misuse() -> None:
    e = Engine(CFG)
    e.handle(CallEnters("c1", "q"), 10)
    with pytest.raises(DuplicateCall):
        e.handle(CallEnters("c1", "q"), 11)
    with pytest.raises(UnknownQueue):
        e.handle(CallEnters("c2", "nope"), 11)
    with pytest.raises(ClockError):
        e.handle(AgentLogin("a"), 9)
    with pytest.raises(UnknownQueue):
        e.handle(AgentLogin("b", queues=("q",)), 12)

    @dataclass(frozen=True)
    class Strange(Event):
        pass

    with pytest.raises(EngineError):
        e.handle(Strange(), 12)


def test_views() -> None:
    s = Sim(CFG)
    s.send(AgentLogin("a"), at=0)
    s.send(CallEnters("c1", "q"), at=1)
    s.send(OfferAnswered("a", "c1"), at=2)
    s.send(CallEnters("c2", "r"), at=3)
    s.send(CallEnters("c3", "r"), at=4)
    a = s.engine.agent_view("a")
    assert (a.name, a.state, a.since, a.call, a.calls_answered) == ("Ann", "on-call", 2.0, "c1", 1)
    qv = s.engine.queue_view("r", now=10)
    assert (qv.waiting, qv.present, qv.logged_in, qv.staffed, qv.available) == (2, 2, 1, 1, 0)
    assert qv.longest_wait_s == 7.0
    assert qv.ewt_next_s == pytest.approx(3 * 180.0)  # 3rd in line, 1 staffed agent
    cv = s.engine.call_view("c3")
    assert (cv.state, cv.position, cv.queue) == ("queued", 2, "r")
    assert s.engine.call_view("unknown") is None


def test_ring_all_with_levels_rings_only_the_best_level_first() -> None:
    s = Sim(CFG)
    s.send(AgentLogin("a"))
    s.send(AgentLogin("b"))
    s.send(CallEnters("c1", "r"))
    assert [o.agent for o in s.of(OfferCall)] == ["b"]  # level 2 before level 1
