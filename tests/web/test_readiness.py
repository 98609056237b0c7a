"""The readiness check: judging a connection, and the echo test's audio loop."""

from __future__ import annotations

import asyncio

import numpy as np

from acd.web.readiness import FRAME, EchoTest, judge

GOOD = {"rtt_ms": 30.0, "jitter_ms": 2.0, "loss_pct": 0.0, "codec": "opus", "packets_received": 500}


def test_a_good_connection_passes() -> None:
    r = judge("alice", GOOD, voiced_s=5.0, seconds=10)
    assert r.passed and r.reasons == () and r.mos > 4.0 and r.codec == "opus"


def test_each_threshold_fails_with_its_reason() -> None:
    cases = {"rtt_ms": (450.0, "round trip"), "jitter_ms": (45.0, "jitter"), "loss_pct": (6.0, "packet loss")}
    for key, (value, words) in cases.items():
        r = judge("alice", {**GOOD, key: value}, voiced_s=5.0, seconds=10)
        assert not r.passed and any(words in reason for reason in r.reasons), (key, r.reasons)
    assert judge("alice", {**GOOD, "loss_pct": 12.0}, 5.0, 10).mos < 3.5
    silent = judge("alice", GOOD, voiced_s=0.1, seconds=10)
    assert not silent.passed and "microphone" in silent.reasons[0]
    nothing = judge("alice", {**GOOD, "packets_received": 0}, 5.0, 10)
    assert "no audio packets from the agent" in nothing.reasons


class Clock:
    def __init__(self) -> None:
        self.callbacks: dict[int, object] = {}

    def add(self, cb) -> int:
        self.callbacks[1] = cb
        return 1

    def remove(self, token: int) -> None:
        self.callbacks.pop(token)


class LoopMedia:
    """A stand-in agent whose microphone plays a tone and who records what they hear."""

    def __init__(self) -> None:
        self.heard: list[np.ndarray] = []
        self.detached = False
        t = np.arange(FRAME) / 16000
        self.voice = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)

    def attach(self, rate: int, frame: int):
        assert (rate, frame) == (16000, FRAME)

        def party(received: np.ndarray, now: float) -> np.ndarray:
            self.heard.append(received)
            return self.voice

        return party

    def detach(self) -> None:
        self.detached = True

    async def stats(self) -> dict:
        return GOOD


def test_echo_returns_the_agents_voice_and_reports() -> None:
    media, clock, results = LoopMedia(), Clock(), []
    test = EchoTest("alice", media, clock, 2.0, results.append)
    test.start()
    for i in range(100):
        clock.callbacks[1](i * 0.02)
    assert np.array_equal(media.heard[-1], media.voice) and not media.heard[0].any()  # one frame later
    record = asyncio.run(test.finish())
    assert media.detached and not clock.callbacks and results == [record]
    assert record.passed and test.voiced_frames == 100
