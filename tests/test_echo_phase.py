"""The echo test's leg follows its caller's phase on the shared media clock (acd/media_session.py),
on virtual time: a fake clock with the real one's slot interface, RTP from an AudioStream, and
every tick and arrival run in time order. What is checked is the hold — how long each frame
waited on the server between its packet's arrival and the tick that played (and echoed) it."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from acd.media_session import CallMedia
from media.rtp import parse
from media.stream import AudioStream, StreamParams


class FakeClock:
    """MediaClock's interface (add/remove/shift/next_tick/phase) on a virtual timeline."""

    def __init__(self, period: float = 0.02, slots: int = 8) -> None:
        self.period, self.slots, self.slot_s = period, slots, period / slots
        self.due: dict[int, int] = {}
        self.callbacks: dict[int, Callable[[float], None]] = {}
        self.shifts: list[int] = []

    def add(self, callback: Callable[[float], None]) -> int:
        token = len(self.callbacks) + 1
        self.callbacks[token] = callback
        self.due[token] = self.slots  # the first phase-0 tick, at 20 ms
        return token

    def remove(self, token: int) -> None:
        self.callbacks.pop(token, None)

    def next_tick(self, token: int) -> float:
        return self.due[token] * self.slot_s

    def phase(self, token: int) -> int:
        return self.due[token] % self.slots

    def shift(self, token: int, slots: int) -> int:
        self.due[token] += max(-(self.slots - 1), min(self.slots - 1, slots))
        self.shifts.append(slots)
        return self.phase(token)


class Echo:
    """A CallMedia echo leg; every frame its jitter buffer plays is noted with the tick's time."""

    def __init__(self, clock: FakeClock, follow: bool) -> None:
        self.media = CallMedia(clock, "127.0.0.1", 0, StreamParams(0, "PCMU", min_delay_ms=0 if follow else 20),
                               0.0, follow_phase=follow, label="echo")
        self.media._token = clock.add(self.media._tick)
        self.media.endpoint.send_rtp = lambda data: None  # type: ignore[method-assign]
        self.played: list[tuple[float, str, int]] = []  # (tick, kind, RTP timestamp)
        jb = self.media.stream.jitter
        get = jb.get

        def noting(now: float, **kw: object):  # type: ignore[no-untyped-def]
            frame = get(now, **kw)
            self.played.append((now, frame.kind, frame.timestamp))
            return frame

        jb.get = noting  # type: ignore[method-assign]


def run(follow: bool, *, first: float = 0.0137, drift: float = 0.0, seconds: float = 12.0,
        jitter_s: float = 0.0005, seed: int = 5) -> tuple[np.ndarray, FakeClock, Echo]:
    """The caller sends 20 ms packets from ``first`` on, its clock ``drift`` fast (0.001: 1 ms/s);
    returns how long each frame played after the first second waited since its packet arrived."""
    clock, rng = FakeClock(), random.Random(seed)
    echo = Echo(clock, follow)
    caller = AudioStream(StreamParams(0, "PCMU"), 0.0, rng=random.Random(1))
    events: list[tuple[float, bytes]] = []
    for k in range(int(seconds / 0.02)):
        for data in caller.send(np.full(160, 1000, np.int16), k * 0.02):
            events.append((first + k * 0.02 * (1 - drift) + rng.uniform(0, jitter_s), data))
    events.sort()
    arrived: dict[int, float] = {}
    token = echo.media._token
    i = 0
    while clock.next_tick(token) < seconds:
        at = clock.next_tick(token)
        if i < len(events) and events[i][0] < at:
            t, data = events[i]
            i += 1
            packet = parse(data)
            arrived[packet.timestamp] = t
            echo.media._on_rtp(packet, t)
        else:
            clock.due[token] += clock.slots
            echo.media._tick(at)
    holds = [now - arrived[ts] for now, kind, ts in echo.played if kind == "audio" and now > 1.0]
    return np.array(holds), clock, echo


def test_without_following_the_hold_is_the_buffer_s_20_ms_plus_the_clock_s_phase() -> None:
    holds, clock, _ = run(False)
    assert not clock.shifts
    assert holds.min() >= 0.020 and 0.025 < np.median(holds) < 0.040  # 20 ms + where the grid falls


@pytest.mark.parametrize("first", [0.0011, 0.0137, 0.0199])
def test_the_echo_ticks_just_after_its_packets_are_due(first: float) -> None:
    """Aligned at the first packet (before anything is echoed): every frame waits the buffer's
    target (10 ms on a quiet line) plus the guard and one or two slots, from the start."""
    holds, clock, echo = run(True, first=first)
    assert len(holds) >= 500 and echo.media.stream.jitter.stats["concealed"] == 0
    target, guard, jitter = 0.0100, 0.001, 0.0005
    assert target + guard + clock.slot_s - jitter <= holds.min()
    assert holds.max() <= target + jitter + guard + 2 * clock.slot_s
    assert len(clock.shifts) <= 3  # the alignment, then at most a slot or two while the target settles


@pytest.mark.parametrize("drift", [0.001, -0.001])
def test_the_echo_follows_a_drifting_caller_a_slot_at_a_time(drift: float) -> None:
    """A caller clock 0.1 % off moves 1 ms/s against ours: 12 ms over the call. The leg moves with
    it one slot at a time, so the hold stays within a frame of the target (the buffer itself
    never has to insert or drop a whole frame) and no audio is concealed; without following,
    the buffer would drop or insert a frame every 20 s or so and the hold would sweep 20-40 ms."""
    holds, clock, echo = run(True, drift=drift)
    jb = echo.media.stream.jitter
    assert jb.stats["concealed"] == 0 and jb.stats["dropped_catchup"] == 0 and jb.stats["inserted"] == 0
    # the target itself rises a little (the last 3 s of transits spread by the drift): 10-13 ms
    assert 0.009 <= holds.min() and holds.max() < 0.0225, np.percentile(holds, [0, 50, 100])
    moves = clock.shifts[1:]
    assert len(moves) >= 3 and all(s == (1 if drift < 0 else -1) for s in moves), clock.shifts
