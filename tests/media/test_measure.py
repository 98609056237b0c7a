"""media.measure against synthetic signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from media.measure import AudioTap, dominant_frequency, echo_delay, level_dbfs


def test_frequency_and_level_of_a_known_sine() -> None:
    t = np.arange(16000) / 8000
    x = (0.5 * 32767 * np.sin(2 * np.pi * 1234.5 * t)).astype(np.int16)
    assert dominant_frequency(x, 8000) == pytest.approx(1234.5, abs=1.0)
    assert level_dbfs(x) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)
    assert level_dbfs(np.zeros(100, dtype=np.int16)) == float("-inf")
    assert dominant_frequency(np.zeros(100, dtype=np.int16), 8000) == 0.0


def test_echo_delay_of_a_shifted_noise() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 0.2, 8000)
    echo = np.concatenate((np.zeros(360), 0.7 * ref))[:8000]
    delay, peak = echo_delay(ref, echo, 8000)
    assert delay == pytest.approx(0.045, abs=1 / 8000) and peak > 0.6


def test_tap_keeps_only_the_last_seconds() -> None:
    tap = AudioTap(8000, seconds=1.0)
    for k in range(200):
        tap(np.full(160, k, dtype=np.int16), k * 0.02)
    assert len(tap.samples()) == 8000 and tap.samples()[0] == 150
