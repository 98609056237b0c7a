"""Music on hold: one decoded loop shared by every caller, and one encode per frame per codec.

A :class:`MusicSource` decodes and resamples each WAV of a folder once (sorted by name, joined
with short equal-power crossfades, the end crossfaded into the start so the loop has no
seam) and keeps the result in memory as a read-only array of frames, bounded by
``max_seconds``. Its length is a whole number of frames, so frame ``i`` of the stream is
simply row ``i mod n_frames``.

The source holds no clock. The media loop passes its own frame counter (``tick``: one per
20 ms) to :meth:`MohPlayer.frame`. A player only stores an offset:

- :attr:`MohMode.RADIO` (the default): offset 0, every caller hears the same point of the
  music, like a radio — and every caller on the same codec shares the same encoded bytes;
- :attr:`MohMode.FROM_START`: offset ``-start_tick``, each caller starts at the beginning.

:class:`EncodedCache` maps a loop position to the encoded payload, so N callers on the same
codec cost one encode per frame. It suits stateless codecs (G.711) exactly; for stateful
encoders (G.722, Opus) the shared stream is what one encoder produced in radio order, which
decoders joining mid-stream handle as they do a packet loss.

An empty or missing folder falls back to a generated gentle chime pattern (with a warning).
"""

from __future__ import annotations

import enum
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from media.errors import MediaError
from media.prompts import read_wav, resample
from media.tones import dbm0_to_rms

__all__ = ["MusicSource", "MohPlayer", "MohMode", "EncodedCache", "shared_source",
           "clear_shared"]

log = logging.getLogger(__name__)

CROSSFADE_S = 0.5  # between files and at the loop point
MAX_SECONDS = 900.0  # memory bound: 15 min is 28.8 MB at 16 kHz
FALLBACK_DBM0 = -24.0
_FALLBACK_NOTES = (523.25, 659.25, 783.99, 659.25)  # C5 E5 G5 E5, equal temperament
_FALLBACK_NOTE_S = 0.6
_FALLBACK_REST_S = 1.2


class MohMode(enum.Enum):
    RADIO = "radio"
    FROM_START = "from-start"


def _equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)  # fade in, fade out


def _fallback(rate: int) -> np.ndarray:
    """A soft C-major chime arpeggio and a rest; each note decays to silence, period 3.6 s."""
    n = int(_FALLBACK_NOTE_S * rate)
    t = np.arange(n, dtype=np.float64) / rate
    env = np.exp(-t / 0.18) * np.minimum(1.0, t / 0.01)
    env *= np.minimum(1.0, (n - 1 - np.arange(n)) / (0.05 * rate))  # reach exactly 0
    amp = dbm0_to_rms(FALLBACK_DBM0) * math.sqrt(2.0) * 2.5  # the decay keeps the mean low
    notes = [amp * env * (np.sin(2 * np.pi * f * t) + 0.2 * np.sin(4 * np.pi * f * t))
             for f in _FALLBACK_NOTES]
    notes.append(np.zeros(int(_FALLBACK_REST_S * rate)))
    return np.clip(np.rint(np.concatenate(notes)), -32768, 32767).astype(np.int16)


class MusicSource:
    """The music of ``folder`` at ``rate``, decoded once, as a loop of ``frame_ms`` frames."""

    def __init__(self, folder: str | Path | None, rate: int, frame_ms: int = 20, *,
                 max_seconds: float = MAX_SECONDS, crossfade_s: float = CROSSFADE_S) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.rate = rate
        self.frame_size = rate * frame_ms // 1000
        self.decodes = 0
        self.files: list[Path] = []
        self._caches: dict[str, EncodedCache] = {}
        xfade = int(crossfade_s * rate)
        track = self._load(int(max_seconds * rate), xfade)
        self.fallback = track is None
        if track is None:
            log.warning("music on hold: no usable WAV in %s; playing the built-in chimes",
                        self.folder)
            track = _fallback(rate)  # already periodic: no crossfade
            track = np.concatenate([track, np.zeros(-track.size % self.frame_size, np.int16)])
        else:
            track = self._loop(track, xfade)
        frames = track.reshape(-1, self.frame_size)
        frames.flags.writeable = False
        self._frames = frames

    def _load(self, limit: int, xfade: int) -> np.ndarray | None:
        if self.folder is None or not self.folder.is_dir():
            return None
        track: np.ndarray | None = None
        for path in sorted(p for p in self.folder.iterdir() if p.suffix.lower() == ".wav"):
            try:
                x, src_rate = read_wav(path)
            except MediaError as exc:
                log.warning("music on hold: skipping %s", exc)
                continue
            self.decodes += 1
            x = resample(x, src_rate, self.rate)
            if x.size == 0:
                continue
            if track is not None and track.size + x.size > limit:
                log.warning("music on hold: %s left out, the loop would pass %.0f s",
                            path, limit / self.rate)
                continue
            self.files.append(path)
            track = x if track is None else self._join(track, x, xfade)
        return track

    @staticmethod
    def _join(a: np.ndarray, b: np.ndarray, xfade: int) -> np.ndarray:
        n = min(xfade, a.size // 4, b.size // 4)
        if n == 0:
            return np.concatenate([a, b])
        fin, fout = _equal_power(n)
        mid = a[a.size - n:] * fout + b[:n] * fin
        return np.concatenate([a[: a.size - n], np.clip(np.rint(mid), -32768, 32767).astype(np.int16),
                               b[n:]])

    def _loop(self, track: np.ndarray, xfade: int) -> np.ndarray:
        """Crossfade the end into the start; the result's length is a multiple of the frame."""
        f = self.frame_size
        n = min(xfade, track.size // 4)
        if n == 0:
            return np.concatenate([track, np.zeros(-track.size % f, np.int16)])
        n += (track.size - n) % f  # a few samples more of crossfade to land on a frame boundary
        if 2 * n > track.size:
            return np.concatenate([track, np.zeros(-track.size % f, np.int16)])
        fin, fout = _equal_power(n)
        out = track[: track.size - n].copy()
        head = track[:n] * fin + track[track.size - n:] * fout
        out[:n] = np.clip(np.rint(head), -32768, 32767).astype(np.int16)
        return out

    @property
    def n_frames(self) -> int:
        return int(self._frames.shape[0])

    @property
    def duration(self) -> float:
        return self._frames.size / self.rate

    def frame_at(self, index: int) -> np.ndarray:
        """Frame ``index`` of the endless stream (a read-only view; copy before changing it)."""
        return self._frames[index % self._frames.shape[0]]

    def encoded_cache(self, codec_name: str, encode_fn: Callable[[np.ndarray], bytes],
                      capacity: int | None = None) -> EncodedCache:
        """The one :class:`EncodedCache` of this source for ``codec_name`` (made on first use)."""
        cache = self._caches.get(codec_name)
        if cache is None:
            cache = EncodedCache(codec_name, encode_fn, capacity or self.n_frames)
            self._caches[codec_name] = cache
        return cache

    def player(self, tick: int, mode: MohMode = MohMode.RADIO) -> MohPlayer:
        return MohPlayer(self, tick, mode)


class MohPlayer:
    """One caller's view of a :class:`MusicSource`: an offset, nothing decoded."""

    __slots__ = ("source", "mode", "offset")

    def __init__(self, source: MusicSource, start_tick: int, mode: MohMode = MohMode.RADIO) -> None:
        if not isinstance(mode, MohMode):
            raise MediaError(f"music on hold: unknown mode {mode!r}")
        self.source = source
        self.mode = mode
        self.offset = 0 if mode is MohMode.RADIO else -int(start_tick)

    def position(self, tick: int) -> int:
        """The loop position (frame row) this caller hears at media-clock ``tick``."""
        return (tick + self.offset) % self.source.n_frames

    def frame(self, tick: int) -> np.ndarray:
        return self.source.frame_at(tick + self.offset)

    def encoded(self, tick: int, cache: EncodedCache) -> bytes:
        pos = self.position(tick)
        return cache.get(pos, self.source.frame_at(pos))


class EncodedCache:
    """Loop position → encoded payload for one codec; LRU-bounded to ``capacity`` frames."""

    def __init__(self, codec_name: str, encode_fn: Callable[[np.ndarray], bytes],
                 capacity: int = 3000) -> None:
        if capacity < 1:
            raise MediaError(f"encoded cache {codec_name}: capacity must be >= 1")
        self.codec_name = codec_name
        self.capacity = capacity
        self.encodes = 0
        self.hits = 0
        self._encode = encode_fn
        self._items: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, index: int, pcm: np.ndarray) -> bytes:
        """The payload for frame ``index``, encoding ``pcm`` only the first time it is asked."""
        data = self._items.get(index)
        if data is not None:
            self._items.move_to_end(index)
            self.hits += 1
            return data
        data = self._encode(pcm)
        self.encodes += 1
        self._items[index] = data
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return data


_shared: dict[tuple[str, int, int], MusicSource] = {}


def shared_source(folder: str | Path | None, rate: int, frame_ms: int = 20) -> MusicSource:
    """One :class:`MusicSource` per (folder, rate, frame) for the whole process.

    Call :func:`clear_shared` after changing the folder's files.
    """
    key = (str(Path(folder).resolve()) if folder is not None else "", rate, frame_ms)
    src = _shared.get(key)
    if src is None:
        src = _shared[key] = MusicSource(folder, rate, frame_ms)
    return src


def clear_shared() -> None:
    """Forget the shared sources (the next :func:`shared_source` decodes again)."""
    _shared.clear()
