"""The queue_log text file, in Asterisk's format, for tools that read Asterisk's queue_log.

Each line is ``epoch|callid|queue|agent|EVENT|data1|data2|…`` as
:func:`acd.engine.records.format_queue_log_line` makes it, ended by ``\\n``.

Durability and atomicity:

- The file is opened ``O_APPEND`` and every batch of whole lines goes out in **one**
  ``write(2)`` with no user-space buffer, so a line whose ``append`` returned is in the
  kernel's page cache: a crash of the process (``kill -9``) cannot lose it or tear it.
  Only an OS crash or a full disk can leave a partial last line; :func:`read_lines` skips it.
- ``fsync`` runs in batches: at most every ``fsync_interval_s`` seconds (checked on each
  append), on :meth:`QueueLogFile.sync` (the server calls it about once a second) and on
  close. An OS crash may lose the lines of the last interval, never a process crash.

Rotation: before a write that would make the file exceed ``max_bytes``, ``queue_log``
becomes ``queue_log.1`` (``.1`` becomes ``.2`` …, ``.KEEP`` is deleted), like logrotate's
numbering, so a tool following ``queue_log`` by name sees a new file. Only the server writes
the file; other processes opening the store (the CLI) never touch it.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from acd.store.base import StoreError

__all__ = ["QueueLogFile", "read_lines", "DEFAULT_MAX_BYTES", "DEFAULT_KEEP"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP = 5
FILE_MODE = 0o640


class QueueLogFile:
    """Append-only writer of one queue_log file with size rotation."""

    def __init__(self, path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP, fsync_interval_s: float = 1.0) -> None:
        if max_bytes < 1024:
            raise StoreError(f"queue_log max_bytes must be at least 1024, not {max_bytes}")
        if keep < 1:
            raise StoreError(f"queue_log keep must be at least 1, not {keep}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.fsync_interval_s = fsync_interval_s
        self.lines_written = 0
        self.fsyncs = 0
        self.rotations = 0
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._last_sync = time.monotonic()

    # -- writing -----------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        """Append whole lines (without newlines) in one ``write``; fsync when due."""
        if not lines:
            return
        for line in lines:
            if "\n" in line or "\r" in line:
                raise StoreError(f"a queue_log line must be one line: {line!r}")
        data = ("\n".join(lines) + "\n").encode("utf-8")
        fd = self._open()
        if self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
            fd = self._open()
        self._write_all(fd, data)
        self._size += len(data)
        self.lines_written += len(lines)
        self._dirty = True
        if time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self.sync()

    def sync(self) -> None:
        """fsync what was written since the last sync."""
        if self._fd is not None and self._dirty:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise StoreError(f"{self.path}: fsync failed: {exc.strerror or exc}") from exc
            self.fsyncs += 1
        self._dirty = False
        self._last_sync = time.monotonic()

    def rotate(self) -> None:
        """Close the file and shift ``queue_log`` → ``.1`` → … → ``.KEEP`` (dropped)."""
        self.sync()
        self._close_fd()
        try:
            oldest = self._numbered(self.keep)
            if oldest.exists():
                oldest.unlink()
            for i in range(self.keep - 1, 0, -1):
                src = self._numbered(i)
                if src.exists():
                    src.rename(self._numbered(i + 1))
            if self.path.exists():
                self.path.rename(self._numbered(1))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot rotate: {exc.strerror or exc}") from exc
        self.rotations += 1
        log.info("queue_log rotated: %s -> %s (keeping %d)", self.path, self._numbered(1),
                 self.keep)

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            self._close_fd()

    # -- internals ---------------------------------------------------------------------

    def _numbered(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                   | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
                self._size = os.fstat(self._fd).st_size
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot open: {exc.strerror or exc}") from exc
            self._last_sync = time.monotonic()
        return self._fd

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    log.error("%s: disk full, queue_log line(s) lost", self.path)
                raise StoreError(f"{self.path}: write failed: {exc.strerror or exc}") from exc
            view = view[n:]  # a short write happens only when the disk fills up

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:
                log.warning("%s: close failed: %s", self.path, exc)


def read_lines(path: str | Path) -> Iterator[str]:
    """The complete lines of a queue_log file (without newlines); a last line without its
    newline (torn by an OS crash) is skipped with a warning."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return
    *lines, tail = data.split(b"\n")
    if tail:
        log.warning("%s: partial last line skipped (%d bytes)", path, len(tail))
    for raw in lines:
        yield raw.decode("utf-8", errors="replace")
