"""Per-call stereo WAV recording that survives a crash, and the repair of a crashed file.

:class:`CallRecorder` writes a 16-bit PCM stereo WAV — caller on the left channel, agent on
the right — frame by frame, as the media loop produces them. The 44-byte header is written
at once with sizes 0 and rewritten (RIFF and ``data`` sizes) after every ``header_interval``
seconds of audio and on :meth:`CallRecorder.close`. Counting in audio time keeps the
recorder sans-IO: no clock, one ``write`` per 20 ms tick.

What a crash can cost:

- the process is killed (``kill -9``, OOM): the file holds everything handed to the OS —
  all but the last :data:`BUFFER_S` (0.2 s) still in our buffer — but its header may lag by up to
  ``header_interval``; :func:`repair` (``acd recordings repair FILE``) extends the sizes to
  the data actually present, cut to a whole number of sample frames;
- the machine loses power: the page cache goes too. The ``fsync`` policy decides:
  ``"close"`` (default) syncs once, when the call ends; ``"header"`` also syncs at every
  header rewrite (at most a second of audio lost, one fsync per second per call — mind slow
  disks with many calls); ``"never"`` leaves it to the OS.

The file is created exclusively: an existing recording is never overwritten.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from media.errors import MediaError

__all__ = ["CallRecorder", "RecordingError", "RepairResult", "repair"]

log = logging.getLogger(__name__)

HEADER_INTERVAL_S = 1.0
BUFFER_S = 0.2  # audio held in the write buffer: what a killed process loses at most
_MAX_DATA = 0xFFFFFFFF - 36  # the 32-bit RIFF size limit (about 18 h at 16 kHz stereo)
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # RIFF header, 16-byte fmt chunk, data header
_RIFF_SIZE_AT = 4
_DATA_SIZE_AT = 40
FsyncPolicy = Literal["never", "close", "header"]


class RecordingError(MediaError):
    """A recording that cannot be written or a file that cannot be repaired."""


def _header(rate: int, channels: int, data_bytes: int) -> bytes:
    block = 2 * channels
    return _HEADER.pack(b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels, rate,
                        rate * block, block, 16, b"data", data_bytes)


class CallRecorder:
    """Stereo (left = caller, right = agent) 16-bit WAV at ``rate``, written incrementally.

    States (a table): ``open`` → ``closed``. ``write`` after ``close`` raises; ``close`` twice
    is a no-op.
    """

    _TABLE = {
        ("open", "write"): "open",
        ("open", "close"): "closed",
        ("closed", "close"): "closed",
    }

    def __init__(self, path: str | Path, rate: int, *, frame_ms: int = 20,
                 header_interval: float = HEADER_INTERVAL_S, fsync: FsyncPolicy = "close") -> None:
        if rate not in (8000, 16000, 32000, 48000):
            raise RecordingError(f"{path}: recording rate {rate} Hz (use 8000 or 16000)")
        if fsync not in ("never", "close", "header"):
            raise RecordingError(f"{path}: unknown fsync policy {fsync!r}")
        self.path = Path(path)
        self.rate = rate
        self.frame_size = rate * frame_ms // 1000
        self.fsync = fsync
        self.samples = 0  # per channel
        self.state = "open"
        self._interval = max(1, int(header_interval * rate))
        self._header_at = 0  # samples covered by the header on disk
        try:
            buffering = max(4096, int(BUFFER_S * rate) * 4)
            self._file: BinaryIO = open(self.path, "xb", buffering=buffering)  # noqa: SIM115
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot create recording ({exc.strerror or exc})") from exc
        self._file.write(_header(rate, 2, 0))
        self._file.flush()
        log.debug("recording %s at %d Hz", self.path, rate)

    def _input(self, what: str) -> None:
        nxt = self._TABLE.get((self.state, what))
        if nxt is None:
            raise RecordingError(f"{self.path}: {what} while {self.state}")
        self.state = nxt

    @property
    def duration(self) -> float:
        return self.samples / self.rate

    def write(self, left: np.ndarray | None, right: np.ndarray | None) -> None:
        """Append one frame per side; None is silence on that side. Sides of unequal length
        are padded with silence to the longer one (both None: one frame of silence)."""
        self._input("write")
        n = max(self.frame_size if left is None and right is None else 0,
                0 if left is None else len(left), 0 if right is None else len(right))
        buf = np.zeros((n, 2), dtype="<i2")
        if left is not None:
            buf[: len(left), 0] = left
        if right is not None:
            buf[: len(right), 1] = right
        if (self.samples + n) * 4 > _MAX_DATA:
            self.close()
            raise RecordingError(f"{self.path}: WAV size limit reached; recording closed")
        try:
            self._file.write(buf.tobytes())
        except OSError as exc:
            raise RecordingError(f"{self.path}: write failed ({exc.strerror or exc})") from exc
        self.samples += n
        if self.samples - self._header_at >= self._interval:
            self._update_header(sync=self.fsync == "header")

    def _update_header(self, *, sync: bool) -> None:
        data = self.samples * 4
        f = self._file
        try:
            f.flush()
            f.seek(_RIFF_SIZE_AT)
            f.write(struct.pack("<I", 36 + data))
            f.seek(_DATA_SIZE_AT)
            f.write(struct.pack("<I", data))
            f.seek(0, os.SEEK_END)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        except OSError as exc:
            raise RecordingError(f"{self.path}: header update failed ({exc.strerror or exc})") from exc
        self._header_at = self.samples

    def close(self) -> None:
        """Final header, fsync unless the policy is ``never``, close. Idempotent."""
        was_open = self.state == "open"
        self._input("close")
        if not was_open:
            return
        try:
            self._update_header(sync=self.fsync != "never")
        finally:
            self._file.close()
        log.debug("recording %s closed: %.2f s", self.path, self.duration)

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- repair


@dataclass(frozen=True, slots=True)
class RepairResult:
    path: Path
    rate: int
    channels: int
    bits: int
    header_bytes: int  # the data size the header claimed
    data_bytes: int  # the data size it claims now
    truncated_bytes: int  # a partial sample frame cut off the end
    changed: bool

    @property
    def duration(self) -> float:
        return self.data_bytes / (self.rate * self.channels * self.bits // 8)

    @property
    def header_duration(self) -> float:
        return self.header_bytes / (self.rate * self.channels * self.bits // 8)


def _plausible_chunk(f: BinaryIO, at: int, file_size: int) -> bool:
    """True when a real RIFF chunk header sits at ``at`` (data followed by, e.g., LIST)."""
    if at + 8 > file_size:
        return False
    f.seek(at)
    cid, size = struct.unpack("<4sI", f.read(8))
    return all(32 <= c < 127 for c in cid) and at + 8 + size <= file_size


def repair(path: str | Path) -> RepairResult:
    """Fix the header of a WAV whose writer died: sizes 0 or short are extended to the data
    present, cut to whole sample frames. A correct file is left untouched (``changed`` False).
    """
    p = Path(path)
    try:
        f = open(p, "r+b")  # noqa: SIM115
    except OSError as exc:
        raise RecordingError(f"{p}: cannot open ({exc.strerror or exc})") from exc
    with f:
        file_size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise RecordingError(f"{p}: not a RIFF/WAVE file")
        riff_size = struct.unpack_from("<I", head, 4)[0]
        fmt: tuple[int, ...] | None = None
        pos = 12
        while True:
            if pos + 8 > file_size:
                raise RecordingError(f"{p}: no data chunk" if fmt else f"{p}: no fmt chunk")
            f.seek(pos)
            cid, size = struct.unpack("<4sI", f.read(8))
            if cid == b"fmt ":
                if size < 16:
                    raise RecordingError(f"{p}: fmt chunk of {size} bytes")
                fmt = struct.unpack("<HHIIHH", f.read(16))
            elif cid == b"data":
                break
            pos += 8 + size + (size & 1)
        if fmt is None:
            raise RecordingError(f"{p}: data chunk before the fmt chunk")
        tag, channels, rate, _, block, bits = fmt
        if tag not in (1, 0xFFFE) or block == 0 or channels == 0 or rate == 0:
            raise RecordingError(f"{p}: not a PCM WAV (format {tag:#x}, block {block})")
        start = pos + 8
        available = file_size - start
        claimed = size
        keep = 0 < claimed <= available and (
            claimed + (claimed & 1) >= available  # exact, or exact plus the RIFF pad byte
            or _plausible_chunk(f, start + claimed + (claimed & 1), file_size))  # chunks follow
        new = claimed if keep else (available // block) * block
        truncated = 0 if keep else available - new
        changed = False
        if truncated:
            f.truncate(start + new)
            changed = True
        end = file_size if keep else start + new
        if new != claimed:
            f.seek(pos + 4)
            f.write(struct.pack("<I", new))
            changed = True
        if riff_size != end - 8:
            f.seek(4)
            f.write(struct.pack("<I", end - 8))
            changed = True
        if changed:
            f.flush()
            os.fsync(f.fileno())
    result = RepairResult(p, rate, channels, bits, claimed, new, truncated, changed)
    if changed:
        log.info("repaired %s: %.3f s -> %.3f s of audio", p, result.header_duration, result.duration)
    return result
