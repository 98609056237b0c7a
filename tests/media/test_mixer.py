"""media.mixer: mix-minus proven by FFT (each party hears the others' tones and not its own),
listen-only monitors, whisper and barge, gain and mute, saturation without wrap-around,
missing frames as silence, and the cost per participant per tick."""

from __future__ import annotations

import math

import numpy as np
import pytest

from media.errors import MediaError
from media.mixer import Mixer, Role, benchmark
from media.tones import ToneSource, ToneSpec

RATE = 8000
FREQS = {"caller": 500.0, "agent": 700.0, "third": 1100.0, "super": 1700.0, "monitor": 1300.0}


def band_db(x: np.ndarray, freq: float, rate: int = RATE) -> float:
    """Power within ±20 Hz of ``freq``, in dB relative to a full-scale sine (-inf if none)."""
    x = x.astype(np.float64)
    w = np.hanning(x.size)
    p = np.abs(np.fft.rfft(x * w)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / rate)
    ref = (32767 * w.sum() / 2) ** 2  # the peak bin power of a full-scale sine
    band = p[np.abs(f - freq) <= 20].sum() / 1.5  # a Hann lobe carries 1.5x its peak bin
    return 10 * math.log10(band / ref) if band > 0 else -math.inf


class Call:
    """A mixer fed with one tone per participant, recording what each one hears."""

    def __init__(self, mixer: Mixer, level: float = -10.0) -> None:
        self.mixer = mixer
        self.sources = {pid: ToneSource(ToneSpec(str(pid), (FREQS[pid],), level_dbm0=level), mixer.rate)
                        for pid in FREQS}
        self.heard: dict[str, list[np.ndarray]] = {}

    def run(self, ticks: int, silent: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        self.heard = {p.id: [] for p in self.mixer.participants}
        for _ in range(ticks):
            for p in self.mixer.participants:
                frame = self.sources[p.id].next_frame()
                if p.id not in silent:
                    self.mixer.put(p.id, frame)
            for pid, out in self.mixer.mix().items():
                self.heard[pid].append(out)
        return {pid: np.concatenate(frames) for pid, frames in self.heard.items()}


def hears(x: np.ndarray) -> set[str]:
    """The participants whose tone is audible in ``x`` (above -60 dB full scale)."""
    return {pid for pid, f in FREQS.items() if band_db(x, f) > -60}


def three_party() -> Mixer:
    m = Mixer(RATE)
    for pid in ("caller", "agent", "third"):
        m.add(pid)
    return m


def test_each_hears_the_two_others_and_not_itself() -> None:
    out = Call(three_party()).run(50)
    assert hears(out["caller"]) == {"agent", "third"}
    assert hears(out["agent"]) == {"caller", "third"}
    assert hears(out["third"]) == {"caller", "agent"}
    for pid, x in out.items():
        assert band_db(x, FREQS[pid]) == -math.inf or band_db(x, FREQS[pid]) < -90  # exactly absent
        for other in hears(x):  # at the level the other one talks at (-10 dBm0 = -13.14 dBFS)
            assert band_db(x, FREQS[other]) == pytest.approx(-13.14, abs=0.3)


def test_mix_minus_is_sample_exact() -> None:
    call = Call(three_party())
    out = call.run(10)
    ref = {pid: ToneSource(ToneSpec(pid, (f,), level_dbm0=-10.0), RATE).frames(0.2).astype(np.int32)
           for pid, f in FREQS.items()}
    assert np.array_equal(out["caller"], ref["agent"] + ref["third"])
    assert np.array_equal(out["third"], ref["caller"] + ref["agent"])


def test_monitor_hears_all_and_is_heard_by_none() -> None:
    m = three_party()
    m.add("monitor", Role.LISTEN)
    out = Call(m).run(50)
    assert hears(out["monitor"]) == {"caller", "agent", "third"}
    for pid in ("caller", "agent", "third"):
        assert "monitor" not in hears(out[pid])


def test_whisper_reaches_only_the_agent_then_barge() -> None:
    m = three_party()
    m.add("monitor", Role.LISTEN)
    m.add("super", Role.WHISPER, whisper_to="agent")
    call = Call(m)
    out = call.run(50)
    assert hears(out["agent"]) == {"caller", "third", "super"}
    assert hears(out["caller"]) == {"agent", "third"}
    assert hears(out["third"]) == {"caller", "agent"}
    assert hears(out["super"]) == {"caller", "agent", "third"}  # coaching: hears the call
    assert hears(out["monitor"]) == {"caller", "agent", "third", "super"}
    m.set_role("super", Role.TALK)  # barge in
    out = call.run(50)
    assert hears(out["caller"]) == {"agent", "third", "super"}
    assert hears(out["super"]) == {"caller", "agent", "third"}
    m.set_role("super", Role.LISTEN)  # back to silent monitoring
    out = call.run(50)
    assert hears(out["agent"]) == {"caller", "third"}
    assert hears(out["super"]) == {"caller", "agent", "third"}


def test_whisper_target_leaving() -> None:
    m = three_party()
    m.add("super", Role.WHISPER, whisper_to="agent")
    m.remove("agent")
    out = Call(m).run(20)
    assert set(out) == {"caller", "third", "super"}
    assert hears(out["caller"]) == {"third"} and hears(out["third"]) == {"caller"}
    assert hears(out["super"]) == {"caller", "third"}


def test_gain_and_mute() -> None:
    m = three_party()
    m.set_gain("agent", -6.0)
    m.set_muted("third", True)
    out = Call(m).run(50)
    assert band_db(out["caller"], FREQS["agent"]) == pytest.approx(-13.14 - 6.0, abs=0.3)
    assert hears(out["caller"]) == {"agent"} and hears(out["agent"]) == {"caller"}
    assert hears(out["third"]) == {"caller", "agent"}  # muted, not deaf
    m.set_muted("third", False)
    m.set_gain("agent", 0.0)
    out = Call(m).run(50)
    assert hears(out["caller"]) == {"agent", "third"}
    assert band_db(out["caller"], FREQS["agent"]) == pytest.approx(-13.14, abs=0.3)


def test_missing_input_is_silence_for_that_tick_only() -> None:
    call = Call(three_party())
    out = call.run(20, silent=("third",))
    assert hears(out["caller"]) == {"agent"}
    out = call.run(20)  # no stale frame from before
    assert hears(out["caller"]) == {"agent", "third"}
    m = three_party()
    assert all(not x.any() for x in m.mix().values())  # nobody put anything: silence
    assert m.tick == 1


def test_saturates_instead_of_wrapping() -> None:
    m = three_party()
    n = np.arange(160)
    loud = np.rint(30000 * np.sin(2 * np.pi * 500 * n / RATE)).astype(np.int16)
    m.put("caller", loud)
    m.put("agent", loud)
    third = m.mix()["third"].astype(np.int32)
    ideal = 2 * loud.astype(np.int32)
    assert third.max() == 32767 and third.min() == -32768
    assert np.array_equal(third, np.clip(ideal, -32768, 32767))
    assert np.all(np.sign(third) == np.sign(ideal))  # no wrap to the opposite sign
    wrapped = (loud + loud).astype(np.int32)  # what int16 arithmetic would do
    assert np.any(np.sign(wrapped) != np.sign(ideal))


def test_misuse_raises() -> None:
    m = three_party()
    m.put("caller", np.zeros(160, np.int16))
    with pytest.raises(MediaError, match="already has a frame"):
        m.put("caller", np.zeros(160, np.int16))
    with pytest.raises(MediaError, match="int16\\[160\\]"):
        m.put("agent", np.zeros(320, np.int16))
    with pytest.raises(MediaError, match="int16\\[160\\]"):
        m.put("agent", np.zeros(160, np.float32))
    with pytest.raises(MediaError, match="no participant 'ghost'"):
        m.put("ghost", np.zeros(160, np.int16))
    with pytest.raises(MediaError, match="already in"):
        m.add("caller")
    with pytest.raises(MediaError, match="not a participant"):
        m.add("super", Role.WHISPER, whisper_to="ghost")
    with pytest.raises(MediaError, match="needs the whisper role"):
        m.add("super", Role.TALK, whisper_to="agent")
    with pytest.raises(MediaError, match="gain"):
        m.set_gain("agent", 40.0)
    with pytest.raises(MediaError, match="no participant"):
        m.remove("ghost")
    # A frame put before a membership change survives it.
    m.add("late")
    out = m.mix()
    assert set(out) == {"caller", "agent", "third", "late"}


@pytest.mark.parametrize("rate", [16000, 48000])
def test_wideband_rates(rate: int) -> None:
    m = Mixer(rate)
    assert m.frame_size == rate // 50
    m.add("a")
    m.add("b")
    tone = ToneSource(ToneSpec("t", (3000.0,), level_dbm0=-10.0), rate)
    heard = []
    for _ in range(25):
        m.put("a", tone.next_frame())
        heard.append(m.mix()["b"])
    assert band_db(np.concatenate(heard), 3000.0, rate) == pytest.approx(-13.14, abs=0.3)


def test_benchmark_fits_the_media_clock() -> None:
    us = benchmark(participants=10, ticks=200)
    assert 0 < us < 200  # 10 parties in well under 2 ms of the 20 ms tick
