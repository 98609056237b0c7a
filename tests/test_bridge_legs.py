"""acd.bridge_legs: two legs back to back — audio crosses both ways, between 8 and 16 kHz
too, with a bounded delay (drops and underruns are counted, never a growing queue)."""

from __future__ import annotations

import numpy as np
import pytest

from acd.bridge_legs import DEFAULT_MAX_DELAY_MS, LegBridge
from tests.audio import peak_hz, tone_snr_db


def tone(freq: float, rate: int, seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(level * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames(signal: np.ndarray, size: int) -> list[np.ndarray]:
    return [signal[i:i + size] for i in range(0, len(signal) - size + 1, size)]


def run(bridge: LegBridge, a_in: list[np.ndarray], b_in: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Tick both legs like the media clock does (A, then B, every 20 ms); what each leg sent."""
    a_out, b_out = [], []
    for k, (fa, fb) in enumerate(zip(a_in, b_in)):
        now = k * 0.02
        sent_a = bridge.leg_a(fa, now)
        sent_b = bridge.leg_b(fb, now)
        assert len(sent_a) == len(fa) and len(sent_b) == len(fb)  # each leg sends its own frame size
        assert sent_a.dtype == np.int16 and sent_b.dtype == np.int16
        a_out.append(sent_a)
        b_out.append(sent_b)
    return np.concatenate(a_out), np.concatenate(b_out)


def test_frames_cross_both_ways_at_the_same_rate() -> None:
    rng = np.random.default_rng(1)
    a = [rng.integers(-8000, 8000, 160, dtype=np.int16) for _ in range(50)]
    b = [rng.integers(-8000, 8000, 160, dtype=np.int16) for _ in range(50)]
    bridge = LegBridge(8000, 8000)
    to_a, to_b = run(bridge, a, b)
    # A ticks first: B sends A's frame of the same tick; A sends B's frame of the tick before
    assert np.array_equal(to_b, np.concatenate(a))
    assert not to_a[:160].any()
    assert np.array_equal(to_a[160:], np.concatenate(b[:-1]))
    assert bridge.stats["a_to_b_frames"] == 50 and bridge.stats["b_to_a_frames"] == 49
    assert bridge.stats["b_to_a_underruns"] == 1  # only the very first frame (nothing sent yet)
    assert not bridge.stats["a_to_b_overflows"] and not bridge.stats["b_to_a_overflows"]


@pytest.mark.parametrize(("rate_a", "rate_b"), [(8000, 16000), (16000, 8000), (8000, 48000)])
def test_resampling_keeps_each_tone_and_its_frequency(rate_a: int, rate_b: int) -> None:
    seconds = 2.0
    a = frames(tone(600.0, rate_a, seconds), rate_a // 50)
    b = frames(tone(1000.0, rate_b, seconds), rate_b // 50)
    bridge = LegBridge(rate_a, rate_b)
    to_a, to_b = run(bridge, a, b)
    heard_by_a, heard_by_b = to_a[rate_a // 5:], to_b[rate_b // 5:]  # past the resampler's start
    assert abs(peak_hz(heard_by_b, rate_b) - 600.0) < 2.0
    assert abs(peak_hz(heard_by_a, rate_a) - 1000.0) < 2.0
    # clean: a dropped or repeated block, or a frame of silence, would spread energy around
    assert tone_snr_db(heard_by_b, rate_b, 600.0) > 40
    assert tone_snr_db(heard_by_a, rate_a, 1000.0) > 40
    # the steady resampler gives a frame per frame: silence only while it starts
    assert bridge.stats["a_to_b_underruns"] <= 3 and bridge.stats["b_to_a_underruns"] <= 3
    assert not bridge.stats["a_to_b_dropped_samples"] and not bridge.stats["b_to_a_dropped_samples"]


def test_delay_stays_low_across_rates() -> None:
    """A click sent by A arrives at B within the resampler's hold-back plus one frame."""
    a = [np.zeros(160, np.int16) for _ in range(40)]
    a[10] = a[10].copy()
    a[10][0] = 20000
    b = [np.zeros(320, np.int16) for _ in range(40)]
    bridge = LegBridge(8000, 16000)
    _, to_b = run(bridge, a, b)
    arrived = int(np.argmax(np.abs(to_b))) / 16000
    assert 0.2 <= arrived <= 0.2 + 0.03 + 0.02 + 0.005, arrived  # sent at 200 ms: ≤ 30 ms + 1 frame


def test_the_buffer_is_bounded_and_drops_are_counted() -> None:
    bridge = LegBridge(8000, 8000)
    limit = 8000 * DEFAULT_MAX_DELAY_MS // 1000
    for k in range(100):  # B is not pulling (on hold, not ticking): A's audio must not pile up
        bridge.leg_a(np.full(160, k, np.int16), k * 0.02)
        assert bridge.a_to_b.buffered <= limit
    assert bridge.a_to_b.buffered == limit
    assert bridge.stats["a_to_b_dropped_samples"] == 100 * 160 - limit
    assert bridge.stats["a_to_b_overflows"] == 100 - limit // 160
    # B starts again: it gets the newest audio (the oldest was dropped), not 2 s of backlog
    first = bridge.leg_b(np.zeros(160, np.int16), 2.0)
    assert first[0] == 100 - limit // 160


def test_a_partial_frame_is_silence_and_waits_for_the_rest() -> None:
    bridge = LegBridge(8000, 8000)
    bridge.a_to_b.push(np.full(100, 7, np.int16))
    assert not bridge.leg_b(np.zeros(160, np.int16), 0.0).any()
    assert bridge.stats["a_to_b_underruns"] == 1 and bridge.a_to_b.buffered == 100
    bridge.a_to_b.push(np.full(100, 9, np.int16))
    out = bridge.leg_b(np.zeros(160, np.int16), 0.02)
    assert list(out[:100]) == [7] * 100 and list(out[100:]) == [9] * 60
    assert bridge.a_to_b.buffered == 40


def test_closed_bridge_sends_silence_and_keeps_its_counters() -> None:
    bridge = LegBridge(8000, 16000, label="x")
    bridge.leg_a(np.full(160, 1000, np.int16), 0.0)
    bridge.dtmf("caller", "5")
    stats = bridge.close()
    assert stats["dtmf_caller"] == 1 and stats["b_to_a_underruns"] == 1
    assert not bridge.leg_a(np.full(160, 1000, np.int16), 0.02).any()
    assert not bridge.leg_b(np.full(320, 1000, np.int16), 0.02).any()
    assert len(bridge.leg_b(np.full(320, 1000, np.int16), 0.04)) == 320


def test_a_delay_shorter_than_a_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="one 20 ms frame"):
        LegBridge(8000, 8000, max_delay_ms=10)
