"""Voice prompts: WAV loading and caching, a frame player, a name → file library, and the
English number/duration builder that strings recorded pieces together.

Files are read with the stdlib :mod:`wave` module (PCM, 8-bit unsigned or 16-bit signed,
any channel count — averaged to mono — at any rate) and resampled once with soxr (HQ,
:func:`media.resample.resample_file_rate`) to the rate asked for. Decoded prompts are cached in memory per ``(path, rate)`` (bounded, LRU);
a file replaced on disk (new mtime or size) is decoded again.

Names are slash-separated and extension-less: ``"queue/you-are-number"`` is
``<directory>/queue/you-are-number.wav``. The standard names and their English texts are
in ``media/prompt_texts.toml`` (see :mod:`media.prompt_build`).
"""

from __future__ import annotations

import logging
import math
import operator
import re
import threading
import wave
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from media.errors import MediaError
from media.resample import resample_file_rate

__all__ = [
    "PromptFileError",
    "PromptNotFound",
    "load_wav",
    "read_wav",
    "cache_info",
    "clear_cache",
    "PromptPlayer",
    "PromptLibrary",
    "say_number",
    "say_position",
    "say_wait",
]

log = logging.getLogger(__name__)

WORD_GAP_S = 0.04  # between the pieces of one number ("twenty" "one")
PHRASE_GAP_S = 0.15  # between phrases ("you are number" "five" "in line")
FADE_S = 0.004  # fade in/out of each piece so that trimmed recordings join without clicks
CACHE_BYTES = 64 * 1024 * 1024  # decoded-prompt cache bound (about 35 minutes at 16 kHz)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")


class PromptFileError(MediaError):
    """A WAV file that cannot be used (not a WAV, unsupported format, truncated)."""


class PromptNotFound(MediaError):
    """A prompt name with no file behind it."""


# --------------------------------------------------------------------------- WAV files


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a PCM WAV file to ``(int16 mono samples, rate)``; no cache, no resampling."""
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError as exc:
        raise PromptFileError(f"{p}: no such file") from exc
    except (wave.Error, EOFError) as exc:
        raise PromptFileError(f"{p}: not a usable WAV file ({exc}); "
                              f"convert with: sox {p.name} -b 16 out.wav") from exc
    except OSError as exc:
        raise PromptFileError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    else:
        raise PromptFileError(f"{p}: {8 * width}-bit samples; only 8- and 16-bit PCM are supported")
    if not 1000 <= rate <= 384000:
        raise PromptFileError(f"{p}: sample rate {rate} Hz is out of range")
    usable = (x.size // channels) * channels
    if usable != x.size:
        log.warning("%s: %d trailing byte(s) of a partial frame ignored", p, (x.size - usable) * width)
    if channels > 1:
        x = x[:usable].reshape(-1, channels).sum(axis=1) // channels
    return x.astype(np.int16), rate


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Whole-signal int16 resampling (soxr HQ through :func:`media.resample.resample_file_rate`)."""
    if from_rate == to_rate or x.size == 0:
        return x.astype(np.int16, copy=False)
    return resample_file_rate(x.astype(np.int16, copy=False), from_rate, to_rate)


@dataclass(frozen=True, slots=True)
class CacheInfo:
    hits: int
    decodes: int
    entries: int
    bytes: int


_cache: OrderedDict[tuple[str, int], tuple[int, int, np.ndarray]] = OrderedDict()
_cache_lock = threading.Lock()
_stats = {"hits": 0, "decodes": 0, "bytes": 0}


def load_wav(path: str | Path, rate: int) -> np.ndarray:
    """``path`` decoded to int16 mono at ``rate`` (read-only array, cached per (path, rate))."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise PromptFileError(f"{path}: no such file") from exc
    key = (str(p), int(rate))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            _cache.move_to_end(key)
            _stats["hits"] += 1
            return hit[2]
    x, src_rate = read_wav(p)
    y = resample(x, src_rate, rate)
    y.flags.writeable = False
    with _cache_lock:
        _stats["decodes"] += 1
        old = _cache.pop(key, None)
        if old is not None:
            _stats["bytes"] -= old[2].nbytes
        _cache[key] = (st.st_mtime_ns, st.st_size, y)
        _stats["bytes"] += y.nbytes
        while _stats["bytes"] > CACHE_BYTES and len(_cache) > 1:
            _, (_, _, dropped) = _cache.popitem(last=False)
            _stats["bytes"] -= dropped.nbytes
    log.debug("decoded %s (%d Hz) at %d Hz: %.2f s", p, src_rate, rate, y.size / rate)
    return y


def cache_info() -> CacheInfo:
    """Hits and decodes since start (or :func:`clear_cache`), entries and bytes held."""
    with _cache_lock:
        return CacheInfo(_stats["hits"], _stats["decodes"], len(_cache), _stats["bytes"])


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _stats.update(hits=0, decodes=0, bytes=0)


# --------------------------------------------------------------------------- player


class PromptPlayer:
    """Plays ``samples`` as ``frame_ms`` int16 frames; the last frame is padded with silence.

    States (a table): ``playing`` → ``done`` when the samples run out or on :meth:`stop`
    (barge-in). ``next_frame()`` while done raises :class:`MediaError`.
    """

    _TABLE = {
        ("playing", "frame"): "playing",
        ("playing", "stop"): "done",
        ("done", "stop"): "done",
    }

    def __init__(self, samples: np.ndarray, rate: int, frame_ms: int = 20) -> None:
        self.samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        self.rate = rate
        self.frame_size = rate * frame_ms // 1000
        self.position = 0
        self.state = "playing" if self.samples.size else "done"

    def _input(self, what: str) -> None:
        nxt = self._TABLE.get((self.state, what))
        if nxt is None:
            raise MediaError(f"prompt player: {what!r} while {self.state}")
        self.state = nxt

    @property
    def done(self) -> bool:
        return self.state == "done"

    @property
    def duration(self) -> float:
        return self.samples.size / self.rate

    def next_frame(self) -> np.ndarray:
        self._input("frame")
        end = self.position + self.frame_size
        frame = self.samples[self.position:end]
        self.position = min(end, self.samples.size)
        if self.position >= self.samples.size:
            self.state = "done"
        if frame.size < self.frame_size:
            frame = np.concatenate([frame, np.zeros(self.frame_size - frame.size, np.int16)])
        return frame

    def stop(self) -> None:
        self._input("stop")


# --------------------------------------------------------------------------- library


class PromptLibrary:
    """Resolves prompt names under ``directory`` and loads them at ``rate``."""

    def __init__(self, directory: str | Path, rate: int) -> None:
        self.directory = Path(directory)
        self.rate = rate

    def path(self, name: str) -> Path:
        """The file behind ``name``; :class:`PromptNotFound` names the prompt if there is none."""
        if not _NAME.match(name) or ".." in name.split("/"):
            raise PromptNotFound(f"invalid prompt name {name!r}")
        p = self.directory / f"{name}.wav"
        if not p.is_file():
            raise PromptNotFound(f"prompt {name!r} not found ({p} missing; "
                                 f"`acd prompts build` makes the standard ones)")
        return p

    def exists(self, name: str) -> bool:
        try:
            self.path(name)
        except PromptNotFound:
            return False
        return True

    def load(self, name: str) -> np.ndarray:
        return load_wav(self.path(name), self.rate)

    def concatenate(self, names: Sequence[str]) -> np.ndarray:
        """The prompts one after the other with short natural gaps: :data:`WORD_GAP_S` inside a
        number, :data:`PHRASE_GAP_S` elsewhere; each piece fades in and out over 4 ms."""
        pieces = [self.load(n) for n in names]  # every name resolved before anything plays
        fade = max(1, int(FADE_S * self.rate))
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        out: list[np.ndarray] = []
        for i, (name, x) in enumerate(zip(names, pieces)):
            if i:
                both_digits = names[i - 1].startswith("digits/") and name.startswith("digits/")
                gap = WORD_GAP_S if both_digits else PHRASE_GAP_S
                out.append(np.zeros(int(gap * self.rate), np.int16))
            y = x.astype(np.float32)
            k = min(fade, y.size // 2)
            if k:
                y[:k] *= ramp[:k]
                y[y.size - k:] *= ramp[:k][::-1]
            out.append(np.rint(y).astype(np.int16))
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def player(self, names: Sequence[str] | str, frame_ms: int = 20) -> PromptPlayer:
        """A :class:`PromptPlayer` for one name or a sequence (joined by :meth:`concatenate`)."""
        seq = [names] if isinstance(names, str) else list(names)
        return PromptPlayer(self.concatenate(seq), self.rate, frame_ms)


# --------------------------------------------------------------------------- numbers, durations


def _below_thousand(n: int) -> list[str]:
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [f"digits/{hundreds}", "digits/hundred"]
    if rest >= 20:
        tens, units = divmod(rest, 10)
        out.append(f"digits/{tens * 10}")
        if units:
            out.append(f"digits/{units}")
    elif rest:
        out.append(f"digits/{rest}")
    return out


def say_number(n: int) -> list[str]:
    """Prompt names that say ``n`` (0..999 999) in English, American style (no "and"):
    115 → ``["digits/1", "digits/hundred", "digits/15"]``."""
    if isinstance(n, bool):
        raise ValueError("say_number needs an integer, not a bool")
    n = operator.index(n)
    if not 0 <= n <= 999_999:
        raise ValueError(f"say_number: {n} is outside 0..999999")
    if n == 0:
        return ["digits/0"]
    thousands, rest = divmod(n, 1000)
    out = _below_thousand(thousands) + ["digits/thousand"] if thousands else []
    return out + _below_thousand(rest)


def say_position(n: int) -> list[str]:
    """"You are number N in line"."""
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"say_position: position {n} must be >= 1")
    return ["queue/you-are-number", *say_number(n), "queue/in-line"]


def say_wait(seconds: float) -> list[str]:
    """An estimated wait, rounded the way people say it: under a minute is "less than one
    minute"; then the nearest minute up to 10, the nearest 5 minutes up to an hour, and the
    nearest 10 minutes beyond ("about 1 minute", "about 25 minutes")."""
    s = float(seconds)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"say_wait: {seconds!r} is not a duration")
    if s < 60:
        return ["queue/less-than", "digits/1", "queue/minute"]
    minutes = s / 60.0
    step = 1 if minutes < 9.5 else 5 if minutes < 57.5 else 10
    m = min(999_999, max(1, int(minutes / step + 0.5) * step))
    return ["queue/about", *say_number(m), "queue/minute" if m == 1 else "queue/minutes"]
