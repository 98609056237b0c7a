"""Audio ports without a sound card, for headless agents, tests and diagnostics. Both follow the
``AudioPort`` interface of softphone/audio.py (20 ms frames of 48 kHz mono int16) and pace
themselves to real time: :meth:`capture` gives one frame per 20 ms of wall-clock time since
its first call (``None`` until the next one is due; a backlog beyond a few frames is skipped,
as a sound card would overrun).

- :class:`FileAudio`: the microphone plays a WAV file (any rate, mono or stereo, 8/16/24/32
  bit PCM; resampled to 48 kHz; looped), or a sine tone, or silence; what is heard is
  recorded to a WAV file (48 kHz mono 16 bit).
- :class:`EchoAudio`: what is heard goes back out as the microphone one frame later
  (optionally recorded too).

``levels()`` gives the RMS of the latest frame each way in dBFS (-120 for silence), with the
keys of softphone/audio.py: ``{"input_dbfs": …, "output_dbfs": …}``.
"""

from __future__ import annotations

import collections
import logging
import math
import time
import wave
from pathlib import Path

import numpy as np

from media.resample import resample_file_rate
from softphone.errors import ConfigError

__all__ = ["FileAudio", "EchoAudio", "read_wav_48k", "FRAME_RATE", "FRAME_SAMPLES"]

log = logging.getLogger(__name__)

FRAME_RATE = 48000
FRAME_SAMPLES = 960
_PERIOD = FRAME_SAMPLES / FRAME_RATE
MAX_BACKLOG = 5  # frames; beyond this the oldest due frames are skipped


def read_wav_48k(path: str | Path) -> np.ndarray:
    """A PCM WAV file as 48 kHz mono int16."""
    try:
        with wave.open(str(path), "rb") as w:
            nch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (OSError, wave.Error, EOFError) as exc:
        raise ConfigError(f"cannot read WAV file {path}: {exc}") from None
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v) >> 8
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.int64) >> 16
    else:
        raise ConfigError(f"{path}: unsupported sample width {width}")
    if nch > 1:
        x = x[: len(x) // nch * nch].reshape(-1, nch).mean(axis=1)
    pcm = np.clip(x, -32768, 32767).astype(np.int16)
    if not len(pcm):
        raise ConfigError(f"{path} holds no audio")
    if rate != FRAME_RATE:
        pcm = resample_file_rate(pcm, rate, FRAME_RATE)
    return pcm


_FLOOR_DBFS = -120.0


def _dbfs(frame: np.ndarray | None) -> float:
    if frame is None or not len(frame):
        return _FLOOR_DBFS
    rms = math.sqrt(float(np.mean(np.square(frame.astype(np.float64))))) / 32768.0
    return max(_FLOOR_DBFS, 20 * math.log10(rms)) if rms > 0 else _FLOOR_DBFS


class _PacedPort:
    """The real-time pacing and bookkeeping shared by both ports."""

    def __init__(self, record: str | Path | None = None) -> None:
        self._t0: float | None = None
        self._delivered = 0
        self._writer: wave.Wave_write | None = None
        self.record_path = Path(record) if record else None
        if self.record_path is not None:
            try:
                self.record_path.parent.mkdir(parents=True, exist_ok=True)
                self._writer = wave.open(str(self.record_path), "wb")
            except OSError as exc:
                raise ConfigError(f"cannot write {self.record_path}: {exc}") from None
            self._writer.setnchannels(1)
            self._writer.setsampwidth(2)
            self._writer.setframerate(FRAME_RATE)
        self.ringing = False
        self._counters = {"captured": 0, "played": 0, "skipped": 0, "rings": 0}
        self._mic: np.ndarray | None = None
        self._speaker: np.ndarray | None = None
        self.closed = False

    def _due(self) -> bool:
        """Whether the next microphone frame is due now (and count it as delivered)."""
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = int((now - self._t0) / _PERIOD + 0.1) + 1  # up to 2 ms early counts as due
        if due - self._delivered > MAX_BACKLOG:
            self._counters["skipped"] += due - self._delivered - 1
            self._delivered = due - 1
        if self._delivered >= due:
            return False
        self._delivered += 1
        return True

    def _next_frame(self) -> np.ndarray:
        raise NotImplementedError

    def capture(self) -> np.ndarray | None:
        if self.closed or not self._due():
            return None
        frame = self._next_frame()
        self._mic = frame
        self._counters["captured"] += 1
        return frame

    def play(self, frame: np.ndarray) -> None:
        if self.closed:
            return
        self._speaker = frame
        self._counters["played"] += 1
        if self._writer is not None:
            self._writer.writeframes(np.asarray(frame, "<i2").tobytes())

    def ring(self, on: bool) -> None:
        if on and not self.ringing:
            self._counters["rings"] += 1
        self.ringing = on

    def levels(self) -> dict[str, float]:
        return {"input_dbfs": _dbfs(self._mic), "output_dbfs": _dbfs(self._speaker)}

    def delays(self) -> dict[str, float]:
        """Audio queued inside the port, in ms: none (frames go straight through)."""
        return {"capture_ms": 0.0, "playout_ms": 0.0}

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class FileAudio(_PacedPort):
    """Microphone from ``play`` (a WAV, looped), or a ``tone_hz`` sine, or silence; speaker
    recorded to ``record`` when given."""

    def __init__(self, play: str | Path | None = None, record: str | Path | None = None, *,
                 tone_hz: float | None = None, level: float = 0.3, loop: bool = True) -> None:
        if play is not None and tone_hz is not None:
            raise ConfigError("play a file or a tone, not both")
        self._source = read_wav_48k(play) if play is not None else None
        self.tone_hz = tone_hz
        self.level = level
        self.loop = loop
        self._pos = 0
        super().__init__(record)

    def _next_frame(self) -> np.ndarray:
        if self._source is not None:
            src = self._source
            if self._pos >= len(src) and not self.loop:
                return np.zeros(FRAME_SAMPLES, np.int16)
            idx = (self._pos + np.arange(FRAME_SAMPLES)) % len(src) if self.loop else \
                np.arange(self._pos, self._pos + FRAME_SAMPLES)
            self._pos += FRAME_SAMPLES
            if self.loop:
                self._pos %= len(src)
                return src[idx]
            part = src[idx[idx < len(src)]]
            return np.pad(part, (0, FRAME_SAMPLES - len(part)))
        if self.tone_hz is not None:
            t = (self._pos + np.arange(FRAME_SAMPLES)) / FRAME_RATE
            self._pos += FRAME_SAMPLES
            return (self.level * 32767 * np.sin(2 * np.pi * self.tone_hz * t)).astype(np.int16)
        return np.zeros(FRAME_SAMPLES, np.int16)


class EchoAudio(_PacedPort):
    """What is heard is sent back one frame later (silence when nothing was heard)."""

    def __init__(self, record: str | Path | None = None, *, max_frames: int = 4) -> None:
        super().__init__(record)
        self._heard: collections.deque[np.ndarray] = collections.deque(maxlen=max_frames)

    def play(self, frame: np.ndarray) -> None:
        super().play(frame)
        if not self.closed:
            self._heard.append(np.array(frame, np.int16, copy=True))

    def _next_frame(self) -> np.ndarray:
        return self._heard.popleft() if self._heard else np.zeros(FRAME_SAMPLES, np.int16)
