"""Stream resampling with soxr: tone frequency kept, state kept across blocks (block-wise ==
whole-signal), no clicks at block boundaries, aliasing rejected, latency measured."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from media.resample import Resampler, resample_file_rate
from tests.audio import dominant_frequency, xcorr_delay

PAIRS = [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)]


def sine(freq: float, rate: int, seconds: float, amp: float = 10000.0) -> np.ndarray:
    return np.round(amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.int16)


def blockwise(r: Resampler, x: np.ndarray, ms: int = 20) -> tuple[np.ndarray, list[float]]:
    """Feed ``x`` in ``ms`` blocks; return the whole output and the latency after each block."""
    n = r.in_rate * ms // 1000
    outs, latency = [], []
    for i in range(0, len(x), n):
        outs.append(r.process(x[i:i + n]))
        latency.append(r.latency)
    outs.append(r.flush())
    return np.concatenate(outs), latency


@pytest.mark.parametrize("in_rate,out_rate", PAIRS)
def test_blockwise_equals_whole_signal_and_keeps_the_tone(in_rate: int, out_rate: int) -> None:
    x = sine(1000, in_rate, 1.0)
    y, _ = blockwise(Resampler(in_rate, out_rate), x)
    whole = resample_file_rate(x, in_rate, out_rate)
    assert len(y) == len(whole) == out_rate  # nothing lost or added after flush
    assert np.abs(y.astype(int) - whole).max() <= 1  # state kept: the same signal (measured 0 LSB)
    assert abs(dominant_frequency(y, out_rate, 0.1) - 1000) < 0.5
    # no clicks: against the ideal continuous sine at the output rate (edges aside)
    ideal = 10000 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / out_rate)
    core = slice(out_rate // 20, -out_rate // 20)
    assert np.abs(y[core] - ideal[core]).max() < 6.0
    # the proof that the check can fail: stateless soxr per 20 ms block clicks at every boundary
    n = in_rate // 50
    stateless = np.concatenate([soxr.resample(x[i:i + n], in_rate, out_rate) for i in range(0, len(x), n)])
    assert np.abs(stateless[core] - ideal[core]).max() > 300


def steady_delay(in_rate: int, out_rate: int) -> tuple[float, float]:
    """The steady engine's own delay inside the signal: a chirp against soxr HQ of the whole."""
    t = np.arange(in_rate) / in_rate
    chirp = np.round(8000 * np.sin(2 * np.pi * (100 * t + 1000 * t**2))).astype(np.int16)
    ref = resample_file_rate(chirp, in_rate, out_rate)
    z, _ = blockwise(Resampler(in_rate, out_rate, steady=True), chirp)
    return xcorr_delay(ref, z, out_rate, 0.01)


@pytest.mark.parametrize("in_rate,out_rate", PAIRS)
def test_latency_of_both_engines(in_rate: int, out_rate: int) -> None:
    x = sine(440, in_rate, 1.0)
    fixed = Resampler(in_rate, out_rate)
    _, held = blockwise(fixed, x)
    assert fixed.latency == 0  # after flush
    # fixed-rate engine: bursts; nothing out at first, then up to ~166 ms held back
    assert held[0] == in_rate // 50 * out_rate / in_rate and 0.02 < max(held) / out_rate < 0.2
    steady = Resampler(in_rate, out_rate, steady=True)
    y, held = blockwise(steady, x)
    # integer ratios: the low-delay polyphase filter; after the first block, one 20 ms block
    # in gives 20 ms out, holding back only the filter's group delay (2.1 ms or 4.3 ms)
    low = min(in_rate, out_rate)
    assert all(h == held[-1] for h in held[1:])
    assert held[-1] / out_rate == pytest.approx(0.00425 if low == 8000 else 0.002125)
    assert len(y) == out_rate and abs(dominant_frequency(y, out_rate, 0.1) - 440) < 0.5
    # ... aligned with the input: no delay of its own inside the signal (chirp against soxr HQ)
    delay_s, peak = steady_delay(in_rate, out_rate)
    assert abs(delay_s) <= 0.0001 and peak > 0.99


@pytest.mark.parametrize("in_rate,out_rate", [(44100, 48000), (48000, 44100), (32000, 48000), (48000, 24000 * 3 // 2)])
def test_soxr_variable_rate_engine_for_other_ratios(in_rate: int, out_rate: int) -> None:
    x = sine(440, in_rate, 1.0)
    steady = Resampler(in_rate, out_rate, steady=True)
    y, held = blockwise(steady, x)
    # soxr's variable-rate engine: one 20 ms block in gives 20 ms out after the first blocks,
    # with a constant hold-back of 5 to 30 ms
    assert all(abs(h - held[-1]) <= 1 for h in held[3:]) and 0.005 <= held[-1] / out_rate <= 0.030
    assert len(y) == out_rate and abs(dominant_frequency(y, out_rate, 0.1) - 440) < 0.5
    # ... and a group delay of its own under 0.3 ms (measured with a chirp)
    delay_s, peak = steady_delay(in_rate, out_rate)
    assert -0.0001 < delay_s <= 0.0003 and peak > 0.97


@pytest.mark.parametrize("in_rate,out_rate", PAIRS + [(48000, 96000), (96000, 48000)])
def test_low_delay_filter_passband_and_stopband(in_rate: int, out_rate: int) -> None:
    """Flat to 85 % of the lower Nyquist frequency; ≥ 80 dB against aliases and images."""
    low = min(in_rate, out_rate)
    for f in (0.1 * low / 2, 0.5 * low / 2, 0.85 * low / 2):
        y, _ = blockwise(Resampler(in_rate, out_rate, steady=True), sine(f, in_rate, 0.5, amp=16000))
        core = y[out_rate // 20:-out_rate // 20].astype(float)
        gain_db = 20 * np.log10(np.sqrt(2 * np.mean(core ** 2)) / 16000)
        assert abs(gain_db) < 0.02, (f, gain_db)
    if out_rate < in_rate:  # tones from the lower Nyquist frequency up must not fold back
        for f in (1.0 * low / 2 + 10, 0.6 * low, 0.9 * low, in_rate / 2 - 100):
            y, _ = blockwise(Resampler(in_rate, out_rate, steady=True), sine(f, in_rate, 0.5, amp=32000))
            assert np.abs(y[low // 20:-low // 20].astype(float)).max() <= 32000 * 10 ** (-80 / 20) + 1, f
    else:  # a tone below the lower Nyquist frequency must leave no image above it
        f = 0.8 * low / 2
        y, _ = blockwise(Resampler(in_rate, out_rate, steady=True), sine(f, in_rate, 1.0, amp=32000))
        n = out_rate // 2
        spectrum = np.abs(np.fft.rfft(y[out_rate // 4:out_rate // 4 + n] * np.blackman(n)))
        freqs = np.fft.rfftfreq(n, 1 / out_rate)
        images = spectrum[freqs > low / 2 + 50].max() / spectrum.max()
        assert 20 * np.log10(images + 1e-12) < -80


def test_low_delay_filter_any_block_sizes_give_the_same_stream() -> None:
    x = sine(997, 48000, 0.3)
    rng = np.random.default_rng(7)
    for in_rate, out_rate, src in ((48000, 16000, x), (48000, 8000, x), (16000, 48000, x[::3].copy())):
        whole = Resampler(in_rate, out_rate, steady=True)
        one = np.concatenate([whole.process(src), whole.flush()])
        r, outs, i = Resampler(in_rate, out_rate, steady=True), [], 0
        while i < len(src):
            n = int(rng.integers(1, 700))
            outs.append(r.process(src[i:i + n]))
            i += n
        outs.append(r.flush())
        pieces = np.concatenate(outs)
        assert len(pieces) == len(one) == len(src) * out_rate // in_rate
        assert np.array_equal(pieces, one)


@pytest.mark.parametrize("steady", [False, True])
def test_downsampling_rejects_aliases_and_upsampling_images(steady: bool) -> None:
    # 48 -> 8 kHz: a 6 kHz tone must not fold back to 2 kHz
    y, _ = blockwise(Resampler(48000, 8000, steady=steady), sine(6000, 48000, 1.0, amp=16000))
    assert np.abs(y[800:-800]).max() <= 4  # > 70 dB down
    # 8 -> 48 kHz: a 3 kHz tone must not leave an image at 5 kHz
    y, _ = blockwise(Resampler(8000, 48000, steady=steady), sine(3000, 8000, 1.0, amp=16000))
    spectrum = np.abs(np.fft.rfft(y[4800:4800 + 38400] * np.hanning(38400)))
    freqs = np.fft.rfftfreq(38400, 1 / 48000)
    image = spectrum[np.abs(freqs - 5000) < 50].max() / spectrum.max()
    assert 20 * np.log10(image + 1e-12) < -70


def test_steady_blockwise_equals_one_chunk() -> None:
    x = sine(1000, 8000, 1.0)
    y, _ = blockwise(Resampler(8000, 48000, steady=True), x)
    r = Resampler(8000, 48000, steady=True)
    whole = np.concatenate([r.process(x), r.flush()])
    assert np.abs(y.astype(int) - whole).max() <= 1


def test_stereo_passthrough_reset_and_bad_arguments() -> None:
    left, right = sine(500, 16000, 0.5), sine(1500, 16000, 0.5)
    y, _ = blockwise(Resampler(16000, 48000, channels=2), np.stack([left, right], axis=1))
    assert y.shape == (24000, 2)
    assert abs(dominant_frequency(y[:, 0], 48000, 0.05) - 500) < 1
    assert abs(dominant_frequency(y[:, 1], 48000, 0.05) - 1500) < 1
    same = Resampler(8000, 8000)
    x = sine(440, 8000, 0.02)
    assert np.array_equal(same.process(x), x) and same.flush().shape == (0,)
    r = Resampler(8000, 16000)
    first, _ = blockwise(r, x)
    with pytest.raises(ValueError, match="flushed"):
        r.process(x)
    r.reset()
    again, _ = blockwise(r, x)
    assert np.array_equal(first, again)
    for bad in (x.astype(np.float32), x.reshape(-1, 1), [1, 2, 3]):
        with pytest.raises(ValueError):
            Resampler(8000, 16000).process(bad)  # type: ignore[arg-type]
    for args, kw in (((8000, 0), {}), ((8000, 16000), {"quality": "best"}), ((8000, 16000), {"channels": 0})):
        with pytest.raises(ValueError):
            Resampler(*args, **kw)
    with pytest.raises(ValueError):
        resample_file_rate(x.astype(np.int32), 8000, 16000)
