"""softphone/audio.py on a real PortAudio stream, without a sound card.

An ``.asoundrc`` in a temporary HOME gives PortAudio's ALSA host API real devices made of ALSA
plugins: ``headset`` (capture reads a raw tone file through the ``file`` plugin's ``infile``,
playback writes a raw file), ``ringer`` (writes another file), all on top of ``type null``.
PortAudio reads the ALSA configuration when it initialises, so the device part runs in a
subprocess with that HOME. The null plugin has no clock: the callbacks run as fast as the CPU
allows, which is a harsh test of the bounded queues (capture keeps only the newest audio, about
a frame per app tick; playout drains at once, so played frames are separated by silence).
What is checked: callbacks ran, frames
flowed both ways with the right frequencies (so the rates and resamplers are right), the ring
reached the ringer device, and a real ``sd._terminate(); sd._initialize()`` re-enumeration
finds the devices by name after the configuration changed (device gone → default device,
device back → chosen device again).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.audio import peak_hz

pytestmark = pytest.mark.realtime  # a real PortAudio stream's timing: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]

ASOUNDRC = """
pcm.mic {{ type file  slave.pcm {{ type null }}  file "/dev/null"  infile "{dir}/in.raw"  format "raw" }}
pcm.spk {{ type file  slave.pcm {{ type null }}  file "{dir}/{out}"  format "raw" }}
pcm.ringer {{ type file  slave.pcm {{ type null }}  file "{dir}/ring.raw"  format "raw" }}
{headset}
"""
HEADSET = 'pcm.headset { type asym  playback.pcm "spk"  capture.pcm "mic" }'

SCRIPT = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from softphone.audio import DeviceAudio, FRAME_RATE, FRAME_SAMPLES
from softphone.devices import DeviceChoice, list_devices

home = Path(sys.argv[1])
out = {"devices": list_devices(), "events": []}
audio = DeviceAudio(DeviceChoice("headset", "ALSA"), DeviceChoice("headset", "ALSA"),
                    [DeviceChoice("ringer", "ALSA")], on_event=lambda e: out["events"].append([e.kind, e.detail]))

def call(seconds, freq, captured):
    t0, k = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        t = (k * FRAME_SAMPLES + np.arange(FRAME_SAMPLES)) / FRAME_RATE
        audio.play(np.rint(6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16))
        k += 1
        while (frame := audio.capture()) is not None:
            captured.append(frame)
        time.sleep(0.02)
    return k

def wait_restarts(n):
    deadline = time.monotonic() + 10
    while audio.counters()["restarts"] < n and time.monotonic() < deadline:
        time.sleep(0.02)

out["status_a"] = audio.status()
audio.ring(True)
frames = []
out["played_a"] = call(1.0, 600.0, frames)
audio.ring(False)
out["counters_a"], out["levels_a"] = audio.counters(), audio.levels()
np.concatenate(frames).tofile(home / "captured.raw")

# the headset disappears from the ALSA configuration: a real re-initialisation must notice
(home / ".asoundrc").write_text(sys.argv[2])
audio.rescan()
wait_restarts(1)
out["status_b"] = audio.status()
frames = []
call(0.3, 600.0, frames)
out["frames_b"] = len(frames)
out["devices_b"] = [d["name"] for d in list_devices()]

# ... and comes back (its playback now going to out2.raw)
(home / ".asoundrc").write_text(sys.argv[3])
audio.rescan()
wait_restarts(2)
out["status_c"] = audio.status()
frames = []
call(0.5, 900.0, frames)
out["frames_c"] = len(frames)
out["counters_c"] = audio.counters()
audio.close()
print(json.dumps(out))
"""


def share(x: np.ndarray, rate: int, *freqs: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[np.any([np.abs(f - q) <= 10 for q in freqs], axis=0)].sum() / spec.sum())


@pytest.fixture
def alsa_home(tmp_path: Path) -> Path:
    t = np.arange(44100) / 44100  # one second of 1 kHz: loops seamlessly
    np.rint(8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tofile(tmp_path / "in.raw")
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(dir=tmp_path, out="out.raw", headset=HEADSET))
    return tmp_path


def test_real_portaudio_duplex_stream_ringer_and_reinit(alsa_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALSA_")}
    env.update(HOME=str(alsa_home), XDG_CONFIG_HOME=str(alsa_home / ".config"), PYTHONPATH=str(ROOT))
    gone = ASOUNDRC.format(dir=alsa_home, out="out.raw", headset="")
    back = ASOUNDRC.format(dir=alsa_home, out="out2.raw", headset=HEADSET)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(alsa_home), gone, back], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    names = {(d["name"], d["hostapi"]) for d in out["devices"]}
    assert {("headset", "ALSA"), ("ringer", "ALSA")} <= names
    status = out["status_a"]
    assert status["microphone"] == status["speaker"] == {"name": "headset", "hostapi": "ALSA"}
    assert status["ringers"] == [{"name": "ringer", "hostapi": "ALSA"}] and not status["fallback"]
    rate = status["out_rate"]
    assert rate == status["in_rate"] and rate in (44100, 48000)

    # callbacks ran and frames flowed: the mic file's tone came through the resampler at 48 kHz
    c = out["counters_a"]
    assert c["callbacks"] > 100 and c["errors"] == 0 and c["restarts"] == 0
    captured = np.fromfile(alsa_home / "captured.raw", np.int16)
    assert len(captured) >= 0.8 * out["played_a"] * 960  # about a frame per app tick (see above)
    assert peak_hz(captured[-9600:], 48000) == pytest.approx(1000.0 * rate / 44100, abs=1.0)
    assert out["levels_a"]["input_dbfs"] == pytest.approx(-15.3, abs=1.0)  # 8000 peak sine

    # what we played reached the device's output file (silence between frames: the null device
    # has no clock and drains faster than real time)
    played = np.fromfile(alsa_home / "out.raw", np.int16)
    sound = played[played != 0]
    assert len(sound) >= 0.95 * out["played_a"] * 960 * rate / 48000 - 1000  # all of it, but the hold-back
    assert peak_hz(sound[: rate // 2], rate) == pytest.approx(600.0, abs=1.0)
    # the ring went to the ringer device's own stream: 440 + 480 Hz for 2 s, then 4 s off
    ring = np.fromfile(alsa_home / "ring.raw", np.int16)
    onset = int(np.argmax(ring != 0))
    assert onset <= 0.1 * rate  # PortAudio primes the device buffer with a little silence
    ring = ring[onset:]
    assert len(ring) >= 3 * rate
    assert share(ring[: 2 * rate - 2000], rate, 440.0, 480.0) > 0.95
    assert not np.any(ring[2 * rate + 500: 3 * rate])

    # re-initialised PortAudio without the headset: default device, reported; frames still flow
    assert "headset" not in out["devices_b"]
    assert out["status_b"]["fallback"] and out["status_b"]["microphone"]["name"] != "headset"
    assert out["frames_b"] >= 5
    kinds = [k for k, _ in out["events"]]
    assert kinds[:4] == ["opened", "restarted", "fallback", "restarted"]
    # back by name, playing into its new output file
    assert out["status_c"]["microphone"] == {"name": "headset", "hostapi": "ALSA"} and not out["status_c"]["fallback"]
    assert out["counters_c"]["restarts"] == 2 and out["frames_c"] >= 10
    played = np.fromfile(alsa_home / "out2.raw", np.int16)
    sound = played[played != 0]
    assert peak_hz(sound[: rate // 4], rate) == pytest.approx(900.0, abs=1.5)
