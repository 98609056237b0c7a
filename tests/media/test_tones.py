"""media.tones: every country profile measured from its samples — frequencies (FFT peaks),
cadence (runs of tone and of digital silence), level (dBm0) — plus phase continuity across
frames and one-shot beeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from media.errors import MediaError
from media.tones import (
    BEEPS,
    RAMP_S,
    DBM0_RMS,
    PROFILES,
    ToneSource,
    ToneSpec,
    dbm0_to_rms,
    level_dbm0,
    tone,
)

RATE = 8000


def spectral_peaks(x: np.ndarray, rate: int, floor_db: float = -20.0) -> list[float]:
    """Frequencies of the local spectral maxima within ``floor_db`` of the strongest one,
    refined by parabolic interpolation of the log magnitude (Hann window, 8x zero padding)."""
    x = x.astype(np.float64) - x.mean()
    nfft = 1 << int(math.ceil(math.log2(8 * x.size)))
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size), nfft))
    mag[: int(20 * nfft / rate)] = 0.0
    db = 20 * np.log10(np.maximum(mag, 1e-12))
    top = db.max()
    k = np.flatnonzero((db[1:-1] > db[:-2]) & (db[1:-1] >= db[2:]) & (db[1:-1] > top + floor_db)) + 1
    out = []
    for i in k:
        a, b, c = db[i - 1], db[i], db[i + 1]
        den = a - 2 * b + c
        out.append((i + (0.5 * (a - c) / den if den < 0 else 0.0)) * rate / nfft)
    return out


def runs(on: np.ndarray) -> list[tuple[bool, int]]:
    """(state, length) of each run of equal values."""
    edges = np.flatnonzero(np.diff(on.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [on.size]])
    return [(bool(on[s]), int(e - s)) for s, e in zip(bounds[:-1], bounds[1:])]


def sounding(x: np.ndarray, rate: int, min_gap_s: float = 0.002) -> np.ndarray:
    """Per sample: is the tone on? Off is digital silence (|x| <= 1 LSB) lasting at least
    ``min_gap_s``; the odd quiet sample at a zero crossing or a beat null counts as on."""
    quiet = np.abs(x.astype(np.int32)) <= 1
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [x.size]])
    lengths = np.diff(bounds)
    state = quiet[bounds[:-1]]
    state &= lengths >= min_gap_s * rate
    return ~np.repeat(state, lengths)


def render(spec: ToneSpec, rate: int = RATE, cycles: float = 2.0) -> np.ndarray:
    src = ToneSource(spec, rate)
    return src.frames(max(spec.period, 1.0) * cycles + 0.3)


def measured_cadence(x: np.ndarray, rate: int) -> list[tuple[bool, float]]:
    """(on?, seconds) of each run of tone and of silence."""
    return [(state, k / rate) for state, k in runs(sounding(x, rate))]


ALL_TONES = [(country, kind) for country, table in PROFILES.items() for kind in table]


def test_table_holds_the_specified_tones() -> None:
    us, uk = PROFILES["us"], PROFILES["uk"]
    assert (us["ringback"].freqs, us["ringback"].cadence) == ((440.0, 480.0), (2.0, 4.0))
    assert (us["busy"].freqs, us["busy"].cadence) == ((480.0, 620.0), (0.5, 0.5))
    assert (uk["ringback"].freqs, uk["ringback"].cadence) == ((400.0, 450.0), (0.4, 0.2, 0.4, 2.0))
    assert (uk["busy"].freqs, uk["busy"].cadence) == ((400.0,), (0.375, 0.375))
    for country in ("eu", "de", "it", "es", "nl"):
        assert PROFILES[country]["ringback"].freqs == (425.0,)
    assert set(PROFILES) >= {"us", "uk", "eu", "de", "fr", "it", "es", "nl", "au", "in", "jp"}
    assert all({"ringback", "busy", "congestion"} <= set(t) for t in PROFILES.values())


@pytest.mark.parametrize(("country", "kind"), ALL_TONES)
def test_frequencies_cadence_and_level_measured(country: str, kind: str) -> None:
    spec = tone(country, kind)
    x = render(spec)
    # Cadence: every on/off run within 3 ms of the table (the first and last runs are cut).
    if spec.cadence:
        got = measured_cadence(x, RATE)[: 2 * len(spec.cadence)]  # two whole cycles
        want = list(zip([True, False] * len(spec.cadence), spec.cadence * 2))
        assert [state for state, _ in got] == [state for state, _ in want]
        assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=0.001), spec
        assert x.size == pytest.approx(sum(d for _, d in measured_cadence(x, RATE)) * RATE)
        first_on = int(spec.cadence[0] * RATE)
    else:
        assert sounding(x, RATE).all()  # continuous
        first_on = x.size
    # Frequencies: the spectral peaks of the first burst are the components (or, for a
    # modulated tone, the carrier and its two sidebands), each within 0.5 Hz.
    ramp = int(0.004 * RATE)
    burst = x[ramp: first_on - ramp]
    want = sorted(spec.freqs)
    if spec.am_hz:
        fc = spec.freqs[0]
        want = [fc - spec.am_hz, fc, fc + spec.am_hz]
    peaks = spectral_peaks(burst, RATE)
    assert len(peaks) == len(want), peaks
    for p, w in zip(peaks, want):
        assert p == pytest.approx(w, abs=0.5)
    # Level: each component at its dBm0 figure, so the burst at that + 10·log10(n), ±0.5 dB.
    expected_db = spec.level_dbm0 + 10 * math.log10(len(spec.freqs))
    assert level_dbm0(burst) == pytest.approx(expected_db, abs=0.5)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_same_tone_at_every_rate(rate: int) -> None:
    spec = tone("uk", "ringback")
    x = render(spec, rate, cycles=1)
    burst = x[int(0.005 * rate): int(0.395 * rate)]
    assert spectral_peaks(burst, rate) == pytest.approx([400.0, 450.0], abs=0.5)
    assert level_dbm0(burst) == pytest.approx(-13 + 3.01, abs=0.5)
    got = measured_cadence(x, rate)
    assert [d for _, d in got[:4]] == pytest.approx([0.4, 0.2, 0.4, 2.0], abs=0.001)


def test_dbm0_reference_follows_g711() -> None:
    n = np.arange(8000)
    full_scale = 32767 * np.sin(2 * np.pi * 1004 * n / 8000)
    assert level_dbm0(full_scale) == pytest.approx(3.14, abs=0.01)
    assert DBM0_RMS == pytest.approx(16141, abs=2)
    assert dbm0_to_rms(-13.0) == pytest.approx(DBM0_RMS * 10 ** (-13 / 20))
    milliwatt = ToneSource(ToneSpec("mw", (1004.0,), level_dbm0=0.0), 8000).frames(1.0)
    assert level_dbm0(milliwatt) == pytest.approx(0.0, abs=0.05)
    assert np.abs(milliwatt).max() == pytest.approx(DBM0_RMS * math.sqrt(2), abs=2)
    assert level_dbm0(np.zeros(10)) == -math.inf


def test_phase_continuity_across_frames() -> None:
    spec = tone("us", "dial")
    by20 = ToneSource(spec, 8000, frame_ms=20).frames(1.0)
    by10 = ToneSource(spec, 8000, frame_ms=10).frames(1.0)
    # Splitting into other frame sizes gives the same waveform (within rounding), ...
    assert np.abs(by20.astype(int) - by10.astype(int)).max() <= 1
    # ... which matches one continuous sine pair: no phase reset at any frame boundary.
    n = np.arange(by20.size)
    ideal = dbm0_to_rms(-13) * math.sqrt(2) * (np.sin(2 * np.pi * 350 * n / 8000) + np.sin(2 * np.pi * 440 * n / 8000))
    assert np.abs(by20 - ideal).max() <= 1.0
    d = np.abs(np.diff(by20.astype(np.float64)))
    at_boundaries = d[159::160]
    assert at_boundaries.max() <= d.max()


def test_phase_runs_on_through_the_off_part() -> None:
    x = ToneSource(tone("eu", "busy"), 8000).frames(1.2).astype(np.float64)
    n = np.arange(x.size)
    ref = np.sin(2 * np.pi * 425 * n / 8000)
    second_burst = slice(int(1.01 * 8000), int(1.19 * 8000))  # bursts at 0-0.5 s and 1.0-1.5 s
    assert np.corrcoef(x[second_burst], ref[second_burst])[0, 1] > 0.999


def test_recording_beep_is_one_kilohertz_for_200_ms_then_done() -> None:
    src = ToneSource(BEEPS["recording-beep"], 16000)
    frames = []
    while not src.done:
        frames.append(src.next_frame())
    x = np.concatenate(frames)
    assert len(frames) == 10
    assert measured_cadence(x, 16000) == [(True, pytest.approx(0.2, abs=2e-4))]
    # The edges ramp over RAMP_S: no click at the start or the end.
    ramp = int(RAMP_S * 16000)
    assert np.abs(x[:ramp // 2]).max() < 0.5 * np.abs(x).max()
    assert np.abs(x[-ramp // 2:]).max() < 0.5 * np.abs(x).max()
    assert spectral_peaks(x, 16000) == pytest.approx([1000.0], abs=0.5)
    with pytest.raises(MediaError, match="finished"):
        src.next_frame()


def test_one_shot_beep_ending_mid_frame_is_padded_with_silence() -> None:
    src = ToneSource(tone("", "callwaiting-beep"), 8000)  # 300 ms = 15 frames
    x = src.frames(1.0)
    assert x.size == 15 * 160 and src.done
    assert measured_cadence(x, 8000) == [(True, pytest.approx(0.3, abs=2e-4))]
    zip_tone = ToneSource(BEEPS["zip"], 8000, frame_ms=30)  # 0.3 s in 0.03 s frames: 10
    y = zip_tone.frames(5.0)
    assert y.size == 10 * 240 and zip_tone.done
    got = measured_cadence(y, 8000)
    assert [s for s, _ in got] == [True, False, True]
    assert [d for _, d in got] == pytest.approx([0.1, 0.1, 0.1], abs=1e-3)


def test_bad_specs_and_names_raise() -> None:
    with pytest.raises(MediaError, match="unknown tone profile 'xx'"):
        tone("xx", "busy")
    with pytest.raises(MediaError, match="no 'hold' tone"):
        tone("us", "hold")
    with pytest.raises(MediaError, match="unknown beep"):
        tone("", "nope")
    assert tone("GB", "busy") is PROFILES["uk"]["busy"]
    with pytest.raises(MediaError, match="does not fit"):
        ToneSource(ToneSpec("hi", (5000.0,)), 8000)
    with pytest.raises(MediaError, match="on/off pairs"):
        ToneSpec("odd", (400.0,), (0.5,))
    with pytest.raises(MediaError, match="positive"):
        ToneSpec("neg", (-1.0,))
