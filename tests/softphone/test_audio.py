"""softphone/audio.py on the fake backend, in virtual time: re-chunking, resampling, the bounded
playout buffer, underflows, capture backlog, hot-plug recovery by device name, ringers, meters
and the microphone check. tests/softphone/test_portaudio.py runs the same code on real PortAudio."""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Callable

import numpy as np
import pytest

from media.resample import resample_file_rate
from softphone.audio import FRAME_RATE, FRAME_SAMPLES, AudioEvent, DeviceAudio, analyse_mic, check_mic
from softphone.devices import (INPUT_OVERFLOW, OUTPUT_UNDERFLOW, AudioDeviceError, DeviceChoice, DeviceInfo,
                               FakeBackend, FakeDevice, find_device, list_devices)
from tests.audio import peak_hz, tone_snr_db

HEADSET = "USB Headset: Audio (hw:1,0)"
BUILTIN = "Built-in Audio Analog Stereo"


def sine(freq: float, rate: int, amp: float = 8000.0) -> Callable[[int, int], np.ndarray]:
    """A fake microphone playing a continuous tone (sample-exact, whatever the block sizes)."""
    def source(first: int, n: int) -> np.ndarray:
        return np.rint(amp * np.sin(2 * np.pi * freq * (first + np.arange(n)) / rate)).astype(np.int16)
    return source


class Frames:
    """Consecutive 20 ms frames at 48 kHz of a tone (or of a constant: frame numbers)."""

    def __init__(self, freq: float = 600.0, amp: float = 6000.0) -> None:
        self.freq, self.amp, self.k = freq, amp, 0

    def __call__(self) -> np.ndarray:
        t = (self.k * FRAME_SAMPLES + np.arange(FRAME_SAMPLES)) / FRAME_RATE
        self.k += 1
        return np.rint(self.amp * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)


def run(backend: FakeBackend, audio: DeviceAudio, seconds: float, *, feed: Callable[[], np.ndarray] | None = None,
        per_tick: int = 1, captured: list[np.ndarray] | None = None, tick: float = 0.02,
        probe: Callable[[], None] | None = None) -> None:
    """The app: every ``tick`` of virtual time, play ``per_tick`` frames and take every ready frame."""
    for _ in range(round(seconds / tick)):
        backend.advance(tick)
        audio.service()
        if feed is not None:
            for _ in range(per_tick):
                audio.play(feed())
        while (frame := audio.capture()) is not None:
            assert frame.dtype == np.int16 and frame.shape == (FRAME_SAMPLES,)
            if captured is not None:
                captured.append(frame)
        if probe is not None:
            probe()


def snr(x: np.ndarray, rate: int, freq: float) -> float:
    return tone_snr_db(x.astype(np.float64) / 32768, rate, freq, tolerance_hz=10.0)


def make(*devices: FakeDevice, events: list[AudioEvent] | None = None, **kw: object) -> tuple[FakeBackend, DeviceAudio]:
    backend = FakeBackend(list(devices), default_input=devices[-1].name, default_output=devices[-1].name)
    kw.setdefault("mic", DeviceChoice(devices[0].name, devices[0].hostapi))
    kw.setdefault("speaker", DeviceChoice(devices[0].name, devices[0].hostapi))
    audio = DeviceAudio(backend=backend, supervise=False, on_event=None if events is None else events.append,
                        **kw)  # type: ignore[arg-type]
    return backend, audio


# --------------------------------------------------------------------------- frames and rates

@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("block", [5, 10, 16, 441])
def test_rechunks_any_device_block_and_resamples_both_ways(rate: int, block: int) -> None:
    headset = FakeDevice(HEADSET, rate=rate, block=block, source=sine(1000.0, rate))
    backend, audio = make(headset)
    captured: list[np.ndarray] = []
    run(backend, audio, 1.5, feed=Frames(600.0), captured=captured)
    assert audio.status()["in_rate"] == rate == audio.status()["out_rate"]
    # capture: every frame 20 ms at 48 kHz, one per 20 ms of device time (less the resampler's hold-back)
    assert 1.5 * 50 - 3 <= len(captured) <= 1.5 * 50
    heard = np.concatenate(captured)[4800:]
    assert peak_hz(heard, FRAME_RATE) == pytest.approx(1000.0, abs=0.2)
    assert snr(heard, FRAME_RATE, 1000.0) > 45  # continuous: a lost or repeated sample costs ~20 dB
    # playout: the 600 Hz frames reach the device at its own rate, continuous once started
    played = headset.output()
    assert len(played) == pytest.approx(1.5 * rate, abs=max(block, 441))
    tail = played[rate // 4:]
    assert peak_hz(tail, rate) == pytest.approx(600.0, abs=0.2)
    assert snr(tail, rate, 600.0) > 45
    counters = audio.counters()
    assert counters["underflows"] <= 1  # at most one while the cushion settles at start
    assert counters["dropped"] == counters["overflows"] == counters["capture_dropped"] == 0
    audio.close()
    assert backend.running() == []


@pytest.mark.parametrize("rate, freq", [(16000, 3400.0), (16000, 200.0), (44100, 7000.0), (8000, 3000.0)])
def test_resampling_keeps_frequency(rate: int, freq: float) -> None:
    headset = FakeDevice(HEADSET, rate=rate, source=sine(freq, rate))
    backend, audio = make(headset)
    captured: list[np.ndarray] = []
    run(backend, audio, 1.0, feed=Frames(freq), captured=captured)
    assert peak_hz(np.concatenate(captured)[4800:], FRAME_RATE) == pytest.approx(freq, abs=0.3)
    assert peak_hz(headset.output()[rate // 4:], rate) == pytest.approx(freq, abs=0.3)
    audio.close()


def test_rate_falls_back_to_a_supported_one() -> None:
    odd = FakeDevice(HEADSET, rate=24000, rates=(16000, 44100, 48000))  # its default rate refused
    backend, audio = make(odd, rate=96000)  # the asked-for rate refused too
    assert audio.status()["in_rate"] == 16000  # the closest to its default
    with pytest.raises(ValueError):
        audio.play(np.zeros(480, np.int16))
    with pytest.raises(ValueError):
        audio.play(np.zeros(FRAME_SAMPLES, np.float32))
    audio.close()


def test_separate_microphone_and_speaker_without_a_common_rate_use_two_streams() -> None:
    mic = FakeDevice("USB Microphone", outputs=0, rate=16000, rates=(16000,), source=sine(700.0, 16000))
    speakers = FakeDevice("Speakers", inputs=0, rate=44100, rates=(44100,))
    backend, audio = make(mic, speakers, speaker=DeviceChoice("Speakers", "ALSA"))
    assert len(backend.running()) == 2
    assert (audio.status()["in_rate"], audio.status()["out_rate"]) == (16000, 44100)
    heard: list[np.ndarray] = []
    run(backend, audio, 1.0, feed=Frames(600.0), captured=heard)
    assert peak_hz(np.concatenate(heard)[4800:], FRAME_RATE) == pytest.approx(700.0, abs=0.3)
    assert peak_hz(speakers.output()[11025:], 44100) == pytest.approx(600.0, abs=0.3)
    assert audio.counters()["errors"] == 0
    audio.close()
    assert backend.running() == []


# --------------------------------------------------------------------------- playout bound

def numbered() -> Callable[[], np.ndarray]:
    """Frames whose every sample is the frame's number (48 kHz device: no resampling)."""
    state = {"k": 0}

    def nxt() -> np.ndarray:
        state["k"] += 1
        return np.full(FRAME_SAMPLES, state["k"], np.int16)
    return nxt


def test_playout_is_bounded_and_drops_the_oldest() -> None:
    headset = FakeDevice(HEADSET, rate=48000, block=480)
    backend, audio = make(headset)
    feed = numbered()
    peak = [0.0]
    pushed_at: dict[int, float] = {}

    def probe() -> None:
        peak[0] = max(peak[0], audio.delays()["playout_ms"])

    for _ in range(100):  # 2 s of three frames per 20 ms: the far end bursts, the device drains 1×
        backend.advance(0.02)
        audio.service()
        for _ in range(3):
            frame = feed()
            pushed_at[int(frame[0])] = backend.now()
            audio.play(frame)
        probe()
    last = int(frame[0])
    run(backend, audio, 0.5)  # let it drain
    assert peak[0] <= 100.0 + 20.0  # max, plus at most the frame that tipped it over
    c = audio.counters()
    assert c["dropped"] >= 190 and c["resyncs"] >= 20
    # what played: frame numbers in order, the newest kept, and none played late
    out = headset.output()
    assert np.all(np.diff(out[out > 0].astype(np.int64)) >= 0)
    survivors = np.unique(out[out > 0])
    assert survivors[-1] == last
    assert c["dropped"] == last - len(survivors)
    times = np.concatenate([t + np.arange(len(b)) / 48000 for t, _, b in headset.played])
    for n in survivors[survivors > 10]:
        first = times[np.argmax(out == n)]
        assert first - pushed_at[int(n)] <= 0.100 + 0.020 + 0.010  # max + a frame + a block
    audio.close()


def test_standing_playout_delay_is_trimmed_back() -> None:
    headset = FakeDevice(HEADSET, rate=48000, block=480)
    backend, audio = make(headset)
    feed = Frames()
    run(backend, audio, 1.0, feed=feed)
    run(backend, audio, 0.02, feed=feed, per_tick=4)  # a burst: +60 ms, under the 100 ms max
    assert audio.delays()["playout_ms"] >= 60
    assert audio.counters()["dropped"] == 0
    run(backend, audio, 2.5, feed=feed)
    assert audio.delays()["playout_ms"] <= 30  # cushion (10 ms) + one frame at most
    c = audio.counters()
    assert 1 <= c["dropped"] <= 3 and c["resyncs"] >= 1


def test_underflow_gives_silence_counts_and_recovers() -> None:
    headset = FakeDevice(HEADSET, rate=44100, block=441)
    backend, audio = make(headset)
    run(backend, audio, 0.5)  # nothing played yet: silence, not an underflow
    assert audio.counters()["underflows"] == 0 and not np.any(headset.output())
    feed = Frames()
    run(backend, audio, 1.0, feed=feed)
    before = audio.counters()["underflows"]
    gap_start = backend.now()
    run(backend, audio, 0.3)  # the far end goes quiet: no frames at all
    gap = headset.output(since=gap_start + 0.05)
    assert not np.any(gap)
    assert audio.counters()["underflows"] == before + 1
    resumed = backend.now()
    run(backend, audio, 1.0, feed=feed)
    again = headset.output(since=resumed + 0.1)
    assert peak_hz(again, 44100) == pytest.approx(600.0, abs=0.5)
    assert audio.counters()["underflows"] == before + 1
    backend.inject(HEADSET, OUTPUT_UNDERFLOW | INPUT_OVERFLOW)  # the device's own xrun flags count too
    run(backend, audio, 0.1, feed=feed)
    assert audio.counters()["underflows"] == before + 2 and audio.counters()["overflows"] == 1
    audio.close()


def test_late_app_ticks_grow_the_cushion_and_stop_underflowing() -> None:
    headset = FakeDevice(HEADSET, rate=48000, block=480)
    backend, audio = make(headset)
    feed = Frames()
    rng = np.random.default_rng(7)
    start = backend.now()

    def tick(k: int) -> None:  # the app's 20 ms clock: on time for 1 s, then up to 30 ms late
        late = float(rng.uniform(0, 0.030)) if k > 50 else 0.0
        backend.advance(start + 0.02 * k + late - backend.now())
        audio.service()
        audio.play(feed())

    for k in range(1, 501):
        tick(k)
    first = audio.counters()["underflows"]
    assert 1 <= first <= 4
    for k in range(501, 1001):
        tick(k)
        assert audio.delays()["playout_ms"] <= 70  # 20 ms frame + lateness + cushion
    assert audio.counters()["underflows"] - first <= 1
    audio.close()


# --------------------------------------------------------------------------- capture backlog

def test_capture_backlog_is_bounded_when_the_app_is_slower_than_the_device() -> None:
    headset = FakeDevice(HEADSET, rate=48000, block=480, speed=1.01, source=sine(1000.0, 48000))
    backend, audio = make(headset)
    worst = 0.0
    for _ in range(300):  # 6 s; the app takes one frame per 20 ms, the device makes 1 % more
        backend.advance(0.02)
        audio.service()
        assert audio.capture() is not None
        worst = max(worst, audio.delays()["capture_ms"])
    assert worst <= 50.0
    c = audio.counters()
    assert c["capture_dropped"] >= 2 and c["resyncs"] >= 2


def test_capture_after_a_long_pause_returns_fresh_audio() -> None:
    headset = FakeDevice(HEADSET, rate=44100, block=441, source=sine(1000.0, 44100))
    backend, audio = make(headset)
    run(backend, audio, 0.5)
    backend.advance(2.0)  # the app did not read for 2 s
    audio.service()
    assert audio.counters()["capture_dropped"] >= 80
    frames = 0
    while audio.capture() is not None:
        frames += 1
    assert frames <= 2  # only the newest audio is left, not a 2 s backlog
    assert audio.delays()["capture_ms"] < 20
    audio.close()


# --------------------------------------------------------------------------- devices by name, hot-plug

def test_devices_are_found_by_name_and_host_api_not_index() -> None:
    devices = [DeviceInfo(0, "USB Headset: Audio (hw:2,0)", "ALSA", 1, 2, 48000.0),
               DeviceInfo(1, "USB Headset: Audio", "JACK Audio Connection Kit", 1, 2, 48000.0),
               DeviceInfo(2, BUILTIN, "ALSA", 2, 2, 44100.0, True, True)]
    choice = DeviceChoice(HEADSET, "ALSA")  # remembered while it was hw:1,0
    assert find_device(devices, choice, "input") is devices[0]
    assert find_device(devices, DeviceChoice("USB Headset: Audio", "JACK Audio Connection Kit"), "output") is devices[1]
    assert find_device(devices, DeviceChoice("usb headset: audio (hw:7,0)"), "output") is devices[0]
    assert find_device(devices, DeviceChoice(), "input") is devices[2]
    assert find_device(devices, DeviceChoice("Webcam"), "input") is None
    assert find_device([DeviceInfo(0, "HDMI", "ALSA", 0, 2, 48000.0)], DeviceChoice("HDMI"), "input") is None
    assert DeviceChoice.from_dict(choice.to_dict()) == choice
    listed = list_devices(FakeBackend([FakeDevice(HEADSET), FakeDevice(BUILTIN, inputs=0, rate=44100)],
                                      default_output=BUILTIN))
    assert listed[1] == {"name": BUILTIN, "hostapi": "ALSA", "input_channels": 0, "output_channels": 2,
                         "default_rate": 44100.0, "is_default": True, "is_default_input": False,
                         "is_default_output": True}


def test_device_loss_falls_back_to_the_default_and_returns_by_name() -> None:
    headset = FakeDevice(HEADSET, rate=48000, source=sine(700.0, 48000))
    builtin = FakeDevice(BUILTIN, rate=44100, source=sine(300.0, 44100))
    events: list[AudioEvent] = []
    backend, audio = make(headset, builtin, events=events)
    feed = Frames()
    heard: list[np.ndarray] = []
    run(backend, audio, 1.0, feed=feed, captured=heard)
    assert peak_hz(np.concatenate(heard)[-24000:], FRAME_RATE) == pytest.approx(700.0, abs=0.5)

    backend.unplug(HEADSET)  # mid-call: the stream ends under us
    lost_at = backend.now()
    heard.clear()
    run(backend, audio, 1.0, feed=feed, captured=heard)
    c = audio.counters()
    assert c["errors"] == 1 and c["restarts"] == 1 and c["fallbacks"] == 1 and backend.reinits == 1
    assert [e.kind for e in events] == ["opened", "lost", "restarted", "fallback"]
    assert audio.status()["fallback"] and audio.status()["speaker"]["name"] == BUILTIN
    assert peak_hz(np.concatenate(heard)[-24000:], FRAME_RATE) == pytest.approx(300.0, abs=0.5)
    assert peak_hz(builtin.output(since=lost_at + 0.2), 44100) == pytest.approx(600.0, abs=0.5)

    back = FakeDevice("USB Headset: Audio (hw:2,0)", rate=48000, source=sine(700.0, 48000))
    backend.plug(back)  # back under another card number, first in the list: every index shifts
    returned_at = backend.now()
    heard.clear()
    run(backend, audio, 1.0, feed=feed, captured=heard)
    assert audio.counters()["restarts"] == 2 and backend.reinits == 2
    assert audio.status()["microphone"] == {"name": back.name, "hostapi": "ALSA"}
    assert not audio.status()["fallback"]
    assert peak_hz(np.concatenate(heard)[-24000:], FRAME_RATE) == pytest.approx(700.0, abs=0.5)
    assert snr(back.output(since=returned_at + 0.2), 48000, 600.0) > 40
    assert not builtin.output(since=returned_at + 0.02).size
    audio.close()


def test_missing_device_is_retried_with_backoff_until_it_returns() -> None:
    headset = FakeDevice(HEADSET, rate=48000, source=sine(700.0, 48000))
    events: list[AudioEvent] = []
    backend, audio = make(headset, events=events, stall_s=0.5)
    feed = Frames()
    run(backend, audio, 0.5, feed=feed)
    backend.unplug(HEADSET, how="stall")  # no error, no end: the callbacks just stop
    retries: list[float] = []
    for _ in range(400):  # 8 s with no device at all; the app keeps going
        backend.advance(0.02)
        before = audio.counters()["retries"]
        audio.service()
        if audio.counters()["retries"] > before:
            retries.append(backend.now())
        audio.play(feed())
        assert audio.capture() is None
    assert audio.counters()["errors"] == 1
    assert events[1].kind == "lost" and "no callbacks" in events[1].detail
    gaps = np.diff(retries)
    assert len(retries) >= 4 and np.all(gaps[1:] >= gaps[:-1] - 0.021) and gaps[-1] >= 2.0
    assert audio.counters()["restarts"] == 0

    backend.plug(FakeDevice(HEADSET, rate=48000, source=sine(700.0, 48000)))
    heard: list[np.ndarray] = []
    run(backend, audio, 1.0, feed=feed, captured=heard)
    assert audio.counters()["restarts"] == 1 and events[-1].kind == "restarted"
    assert len(heard) >= 45  # audio resumed within a supervisor tick: the hardware change is seen
    assert peak_hz(np.concatenate(heard), FRAME_RATE) == pytest.approx(700.0, abs=0.5)
    audio.close()


def test_an_exception_in_the_callback_restarts_the_stream() -> None:
    calls = {"n": 0}

    def flaky(first: int, n: int) -> np.ndarray:
        calls["n"] += 1
        return np.zeros((n, 2) if calls["n"] == 30 else n, np.int16)  # one malformed block

    headset = FakeDevice(HEADSET, rate=48000, source=flaky)
    backend, audio = make(headset)
    heard: list[np.ndarray] = []
    run(backend, audio, 1.0, feed=Frames(), captured=heard)
    c = audio.counters()
    assert c["errors"] == 1 and c["restarts"] == 1
    assert len(heard) >= 45
    audio.close()


def test_no_devices_at_all_and_open_failures_do_not_raise() -> None:
    backend = FakeBackend([])
    audio = DeviceAudio(backend=backend, supervise=False)
    assert audio.capture() is None
    audio.play(np.zeros(FRAME_SAMPLES, np.int16))
    audio.ring(True)
    backend.advance(1.0)
    audio.service()
    assert audio.counters()["retries"] >= 2 and audio.status()["missing"] == ["microphone", "speaker"]
    audio.close()
    picky = FakeDevice(HEADSET, rates=(11025,))  # nothing we would pick
    backend, audio = make(picky)
    assert audio.counters()["retries"] == 1 and audio.status()["microphone"] is None
    audio.close()
    with pytest.raises(AudioDeviceError):
        FakeBackend([picky]).open(DeviceInfo(5, "gone", "ALSA", 1, 1, 48000.0), None, 48000, 480,
                                  lambda i, o, f: True, lambda: None)


# --------------------------------------------------------------------------- ringer

def share(x: np.ndarray, rate: int, *freqs: float) -> float:
    """Share of the signal's energy within ±10 Hz of ``freqs``."""
    if not x.size or not np.any(x):
        return 0.0
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    band = np.any([np.abs(f - freq) <= 10 for freq in freqs], axis=0)
    return float(spec[band].sum() / spec.sum())


def ring_energy(x: np.ndarray, rate: int) -> float:
    return share(x, rate, 440.0, 480.0)


def test_ringer_on_a_different_device_follows_the_cadence() -> None:
    headset = FakeDevice(HEADSET, rate=48000)
    speakers = FakeDevice("Speakers", inputs=0, rate=44100)
    backend, audio = make(headset, speakers, ringers=[DeviceChoice("Speakers", "ALSA")])
    run(backend, audio, 0.2)
    assert not speakers.played  # no ring stream until it rings
    audio.ring(True)
    start = backend.now()
    run(backend, audio, 3.0)
    rang = speakers.output()
    assert ring_energy(rang[: 2 * 44100 - 2000], 44100) > 0.95  # 2 s on ...
    assert np.all(rang[2 * 44100 + 500: 3 * 44100 - 2000] == 0)  # ... then off
    assert 2.9 * 44100 <= len(rang) <= 3.0 * 44100
    assert headset.played[0][0] < start and not np.any(headset.output())  # the call device stays quiet
    audio.ring(False)
    off = backend.now()
    run(backend, audio, 0.5)
    assert all(t <= off + 0.02 for t, _, _ in speakers.played)  # its stream closed at the next pass
    assert len(backend.running()) == 1
    audio.close()


def test_ringing_on_headset_and_speakers_and_fallback_to_the_speaker() -> None:
    headset = FakeDevice(HEADSET, rate=48000)
    speakers = FakeDevice("Speakers", inputs=0, rate=44100)
    backend, audio = make(headset, speakers, ringers=[DeviceChoice(HEADSET), DeviceChoice("Speakers")])
    audio.ring(True)
    feed = Frames(1000.0, amp=3000)  # a call in progress while a second one rings
    run(backend, audio, 1.0, feed=feed)
    both = headset.output()[4800:]
    assert ring_energy(both, 48000) > 0.5 and share(both, 48000, 1000.0) > 0.05  # mixed: both there
    assert ring_energy(speakers.output(), 44100) > 0.95
    audio.close()

    events: list[AudioEvent] = []
    headset = FakeDevice(HEADSET, rate=48000)
    backend, audio = make(headset, events=events, ringers=[DeviceChoice("Speakers")])  # not plugged in
    assert events[-1].kind == "ringer"
    audio.ring(True)
    run(backend, audio, 1.0)
    assert ring_energy(headset.output(), 48000) > 0.95
    audio.ring(False)
    quiet_from = backend.now()
    run(backend, audio, 0.5)
    assert not np.any(headset.output(since=quiet_from + 0.011))
    audio.close()


# --------------------------------------------------------------------------- meters and mic check

def test_levels_in_dbfs() -> None:
    headset = FakeDevice(HEADSET, rate=44100, source=sine(1000.0, 44100, amp=3277.0))  # −20 dBFS peak
    backend, audio = make(headset)
    assert audio.levels() == {"input_dbfs": -120.0, "output_dbfs": -120.0}
    run(backend, audio, 0.5, feed=Frames(500.0, amp=16384.0))  # −6 dBFS peak
    levels = audio.levels()
    assert levels["input_dbfs"] == pytest.approx(-23.0, abs=0.3)  # a sine's RMS is 3 dB under its peak
    assert levels["output_dbfs"] == pytest.approx(-9.0, abs=0.3)
    run(backend, audio, 0.5, feed=lambda: np.zeros(FRAME_SAMPLES, np.int16))
    assert audio.levels()["output_dbfs"] < -40  # falls ~75 dB/s
    audio.close()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Real synthetic speech from espeak-ng at 44.1 kHz."""
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng missing: make test installs the Debian package espeak-ng"
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "Hello, this is a microphone test. Thank you for calling, how can I help you today?"
    subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    return resample_file_rate(np.frombuffer(raw, np.int16), rate, 44100)


def looped(pcm: np.ndarray) -> Callable[[int, int], np.ndarray]:
    return lambda first, n: pcm[(first + np.arange(n)) % len(pcm)]


@pytest.mark.parametrize("kind, verdict", [("speech", "ok"), ("tone", "no speech"), ("noise", "no speech"),
                                           ("silence", "silent"), ("clipping", "clipping"), ("whisper", "too quiet")])
def test_mic_check(kind: str, verdict: str, speech: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    sources = {
        "speech": looped(speech),
        "tone": sine(440.0, 44100),
        "noise": looped(rng.normal(0, 3000, 44100).astype(np.int16)),
        "silence": lambda first, n: np.zeros(n, np.int16),
        "clipping": looped(np.clip(speech.astype(np.int32) * 8, -32768, 32767).astype(np.int16)),
        "whisper": looped((speech // 300).astype(np.int16)),
    }
    headset = FakeDevice(HEADSET, rate=44100, source=sources[kind])
    backend, audio = make(headset)

    def wait() -> None:
        backend.advance(0.01)
        audio.service()

    report = check_mic(audio, 3.0, wait=wait)
    assert report.verdict == verdict
    if kind != "whisper":
        assert report.speech_like == (kind in ("speech", "clipping"))
    assert report.seconds == pytest.approx(3.0)
    if kind == "speech":
        assert -40 < report.rms_dbfs < -10 and 0.3 < report.active_fraction < 0.98
    audio.close()


def test_mic_check_of_a_dead_microphone_does_not_hang() -> None:
    headset = FakeDevice(HEADSET, rate=48000)
    backend, audio = make(headset)
    backend.unplug(HEADSET, how="stall")
    report = check_mic(audio, 1.0, wait=lambda: backend.advance(0.01))
    assert report.verdict == "silent" and not report.speech_like
    assert analyse_mic(np.zeros(100, np.int16)).verdict == "silent"
    audio.close()
