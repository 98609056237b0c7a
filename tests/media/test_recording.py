"""media.recording: stereo call recordings (caller left, agent right) checked by their tones,
the header rewritten once a second, a kill -9 in the middle of a call repaired and read back
by the stdlib and by sox, and ``acd recordings repair``."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from acd.cli import main as acd_main
from media.recording import CallRecorder, RecordingError, repair
from media.tones import ToneSource, ToneSpec
from tests.audio import peak_hz

ROOT = Path(__file__).resolve().parents[2]
LEFT = ToneSpec("caller", (440.0,), level_dbm0=-10.0)
RIGHT = ToneSpec("agent", (1000.0,), level_dbm0=-10.0)




def read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getcomptype()) == (2, 2, "NONE")
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return x[:, 0], x[:, 1], rate


def header_sizes(path: Path) -> tuple[int, int]:
    """(RIFF size, data size) as written in the file's 44-byte header."""
    raw = path.read_bytes()[:44]
    return struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, 40)[0]


def expected(spec: ToneSpec, rate: int, seconds: float) -> np.ndarray:
    return ToneSource(spec, rate).frames(seconds)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_caller_left_agent_right(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "call.wav"
    caller, agent = ToneSource(LEFT, rate), ToneSource(RIGHT, rate)
    with CallRecorder(path, rate) as rec:
        for _ in range(100):  # 2 s
            rec.write(caller.next_frame(), agent.next_frame())
        assert rec.duration == pytest.approx(2.0)
    left, right, got_rate = read_stereo(path)
    assert got_rate == rate and left.size == 2 * rate
    assert np.array_equal(left, expected(LEFT, rate, 2.0))
    assert np.array_equal(right, expected(RIGHT, rate, 2.0))
    assert peak_hz(left, rate) == pytest.approx(440.0, abs=0.5)
    assert peak_hz(right, rate) == pytest.approx(1000.0, abs=0.5)
    assert header_sizes(path) == (36 + 8 * rate, 8 * rate)


def test_missing_side_is_silence_and_unequal_frames_are_padded(tmp_path: Path) -> None:
    path = tmp_path / "half.wav"
    tone = ToneSource(LEFT, 8000)
    with CallRecorder(path, 8000) as rec:
        rec.write(tone.next_frame(), None)  # agent silent
        rec.write(None, tone.next_frame())  # caller silent
        rec.write(None, None)  # both: one frame of silence
        rec.write(np.full(100, 7, np.int16), np.full(160, 9, np.int16))
    left, right, _ = read_stereo(path)
    assert left.size == 4 * 160
    assert np.abs(left[:160]).max() > 1000 and not right[:160].any()
    assert not left[160:320].any() and np.abs(right[160:320]).max() > 1000
    assert not left[320:480].any() and not right[320:480].any()
    assert (left[480:580] == 7).all() and not left[580:].any() and (right[480:] == 9).all()


def test_header_rewritten_about_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "h.wav"
    rec = CallRecorder(path, 16000)
    frame = np.ones(320, np.int16)
    assert header_sizes(path) == (36, 0)
    for _ in range(49):  # 0.98 s
        rec.write(frame, frame)
    assert header_sizes(path) == (36, 0)
    rec.write(frame, frame)  # 1.00 s
    assert header_sizes(path) == (36 + 64000, 64000)
    for _ in range(75):  # 2.5 s
        rec.write(frame, frame)
    assert header_sizes(path) == (36 + 128000, 128000)
    rec.close()
    assert header_sizes(path) == (36 + 160000, 160000)
    assert path.stat().st_size == 44 + 160000


KILLED_WRITER = """
import os, signal, sys
from media.recording import CallRecorder
from media.tones import ToneSource, ToneSpec
from tests.audio import peak_hz
rate = int(sys.argv[2])
caller = ToneSource(ToneSpec("caller", (440.0,), level_dbm0=-10.0), rate)
agent = ToneSource(ToneSpec("agent", (1000.0,), level_dbm0=-10.0), rate)
rec = CallRecorder(sys.argv[1], rate)
for _ in range(int(float(sys.argv[3]) * 50)):
    rec.write(caller.next_frame(), agent.next_frame())
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush, no atexit
"""


def killed_recording(path: Path, rate: int, seconds: float) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), str(rate), str(seconds)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def soxi(flag: str, path: Path) -> str:
    return subprocess.run(["soxi", flag, str(path)], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def test_kill_minus_9_then_repair_recovers_the_audio(tmp_path: Path) -> None:
    path = tmp_path / "crash.wav"
    killed_recording(path, 16000, 3.5)
    riff, data = header_sizes(path)
    assert data == 3 * 64000  # the header lags: it was last rewritten at 3.0 s
    with path.open("ab") as f:
        f.write(b"\x01\x02\x03")  # and the last write was torn in the middle of a sample frame
    on_disk = path.stat().st_size - 44
    assert on_disk >= 3.3 * 64000  # at most BUFFER_S (0.2 s) was still in the process
    result = repair(path)
    assert result.changed and result.header_bytes == 3 * 64000
    assert result.data_bytes == on_disk - 3 and result.data_bytes % 4 == 0
    assert result.truncated_bytes == 3
    assert result.duration >= 3.3 and result.duration >= 2.5
    assert header_sizes(path) == (36 + result.data_bytes, result.data_bytes)
    # The stdlib reads it, and the audio is exactly what the caller and agent said.
    left, right, rate = read_stereo(path)
    seconds = left.size / rate
    assert seconds == pytest.approx(result.duration)
    assert np.array_equal(left, expected(LEFT, rate, 3.5)[: left.size])
    assert np.array_equal(right, expected(RIGHT, rate, 3.5)[: right.size])
    assert peak_hz(left, rate) == pytest.approx(440.0, abs=0.5)
    assert peak_hz(right, rate) == pytest.approx(1000.0, abs=0.5)
    # sox, an independent reader, agrees with the repaired header.
    assert float(soxi("-D", path)) == pytest.approx(result.duration, abs=1e-3)
    assert int(soxi("-s", path)) == result.data_bytes // 4
    assert (soxi("-c", path), soxi("-r", path), soxi("-b", path)) == ("2", "16000", "16")
    again = repair(path)  # idempotent
    assert not again.changed and again.data_bytes == result.data_bytes


def test_kill_before_the_first_header_update(tmp_path: Path) -> None:
    path = tmp_path / "early.wav"
    killed_recording(path, 8000, 0.9)
    assert header_sizes(path) == (36, 0)
    with wave.open(str(path)) as w:
        assert w.getnframes() == 0  # unplayable before the repair
    result = repair(path)
    assert result.changed and result.header_bytes == 0
    assert 0.6 <= result.duration <= 0.9
    left, right, rate = read_stereo(path)
    assert np.array_equal(left, expected(LEFT, 8000, 0.9)[: left.size])
    assert float(soxi("-D", path)) == pytest.approx(result.duration, abs=1e-3)


def test_repair_leaves_good_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "good.wav"
    with CallRecorder(path, 8000) as rec:
        rec.write(np.ones(160, np.int16), None)
    before = path.read_bytes()
    result = repair(path)
    assert not result.changed and result.data_bytes == 640 and path.read_bytes() == before
    # Chunks after the data (LIST metadata from an editor) are not data.
    tagged = tmp_path / "tagged.wav"
    info = b"INFOISFT\x06\x00\x00\x00editor"
    body = before[12:] + b"LIST" + struct.pack("<I", len(info)) + info
    tagged.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    assert not repair(tagged).changed
    assert tagged.read_bytes()[-6:] == b"editor"


def test_repair_errors_name_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"hello world, not a wave file")
    with pytest.raises(RecordingError, match=r"junk\.wav: not a RIFF/WAVE file"):
        repair(junk)
    with pytest.raises(RecordingError, match=r"none\.wav: cannot open"):
        repair(tmp_path / "none.wav")
    headless = tmp_path / "headless.wav"
    headless.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(RecordingError, match="no fmt chunk"):
        repair(headless)


def test_recorder_states_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    rec = CallRecorder(path, 8000)
    rec.close()
    rec.close()  # no-op
    with pytest.raises(RecordingError, match="write while closed"):
        rec.write(None, None)
    with pytest.raises(RecordingError, match="cannot create"):
        CallRecorder(path, 8000)  # never overwrites a recording
    with pytest.raises(RecordingError, match="11025 Hz"):
        CallRecorder(tmp_path / "x.wav", 11025)
    with pytest.raises(RecordingError, match="fsync policy"):
        CallRecorder(tmp_path / "y.wav", 8000, fsync="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("policy", "syncs"), [("never", 0), ("close", 1), ("header", 4)])
def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, syncs: int) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    with CallRecorder(tmp_path / "f.wav", 8000, fsync=policy) as rec:  # type: ignore[arg-type]
        for _ in range(175):  # 3.5 s: header rewrites at 1, 2, 3 s, and the close
            rec.write(None, None)
    assert len(calls) == syncs


def test_cli_recordings_repair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crashed = tmp_path / "crashed.wav"
    killed_recording(crashed, 8000, 1.5)
    good = tmp_path / "good.wav"
    with CallRecorder(good, 8000) as rec:
        rec.write(None, None)
    assert acd_main(["recordings", "repair", str(crashed), str(good)]) == 0
    out = capsys.readouterr().out
    assert f"{crashed}: repaired" in out and "1.000 s" in out
    assert f"{good}: ok" in out
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"nope")
    assert acd_main(["recordings", "repair", str(junk), str(good)]) == 1
    captured = capsys.readouterr()
    assert "junk.wav: not a RIFF/WAVE file" in captured.err and f"{good}: ok" in captured.out
