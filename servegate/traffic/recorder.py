"""Write request logs as TensorFlow Serving's ``PredictionLog`` TFRecord files, off the request path.

A request thread only decides to log (sampling) and puts a small item on a
bounded queue; one writer thread builds the ``PredictionLog`` and appends it.
When the queue is full the item is dropped and counted: logging never makes a
request wait or fail, and a slow disk shows up as drops, not as latency.

Files are ``<filename_prefix>-<UTC time>-<pid>-<sequence>.tfrecord``, created
with mode 0600 (the payloads are the clients' data and may be personal), in a
directory created with mode 0700 when missing. A file is closed and a new one
opened once it would pass ``max_file_bytes``; after each rotation the oldest
files of the same prefix are deleted until the closed files plus one full file
fit in ``max_total_bytes``. Records are flushed whenever the queue runs empty
for a moment, and at least every ``IDLE_FLUSH_S`` under steady traffic (a
queue that never runs empty would otherwise hold them in the writer's buffer),
so a reader sees them within about a second.

TensorFlow's own TFRecord writer does the framing and CRC32C (C++, fast); it
is imported when the recorder starts, not on the first request.
"""

from __future__ import annotations

import glob
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("servegate.traffic")

FILE_SUFFIX = ".tfrecord"
FRAMING_BYTES = 16  # TFRecord: 8-byte length, 4-byte length CRC, payload, 4-byte payload CRC
IDLE_FLUSH_S = 0.5

#: Builds one serialized PredictionLog in the writer thread; None means "nothing to write".
Build = Callable[[], "bytes | None"]


@dataclass(frozen=True)
class RotationLimits:
    """Size limits of one prefix's files (bytes)."""

    max_file_bytes: int = 64 << 20
    max_total_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if self.max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be > 0, got {self.max_file_bytes}")
        if self.max_total_bytes < self.max_file_bytes:
            raise ValueError(
                f"max_total_bytes ({self.max_total_bytes}) must be >= max_file_bytes ({self.max_file_bytes})"
            )


def log_files(prefix: str) -> list[Path]:
    """The log files written under ``prefix``, oldest first (the name starts with the UTC time)."""
    return sorted(Path(p) for p in glob.glob(glob.escape(prefix) + "-*" + FILE_SUFFIX))


class LogFiles:
    """The open file of one ``filename_prefix``, rotated by size, the total capped."""

    def __init__(self, prefix: str, limits: RotationLimits) -> None:
        self.prefix = prefix
        self.limits = limits
        self._writer = None
        self._path: Path | None = None
        self._size = 0
        self._sequence = 0

    def write(self, record: bytes) -> None:
        size = len(record) + FRAMING_BYTES
        if self._writer is not None and self._size + size > self.limits.max_file_bytes and self._size > 0:
            self.close()
        if self._writer is None:
            self._open()
        self._writer.write(record)
        self._size += size

    def _open(self) -> None:
        import tensorflow as tf

        parent = Path(self.prefix).parent
        if not parent.is_dir():
            parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = Path(f"{self.prefix}-{stamp}-{os.getpid()}-{self._sequence:05d}{FILE_SUFFIX}")
        # Created here with 0600 so the payloads are never readable by others, even for a moment;
        # TensorFlow's writer then opens the existing file and keeps its mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._writer = tf.io.TFRecordWriter(str(path))
        self._path = path
        self._size = 0
        self._enforce_total()

    def _enforce_total(self) -> None:
        closed = [p for p in log_files(self.prefix) if p != self._path]
        sizes = {}
        for path in closed:
            try:
                sizes[path] = path.stat().st_size
            except FileNotFoundError:
                continue
        total = sum(sizes.values())
        for path in sorted(sizes):
            if total + self.limits.max_file_bytes <= self.limits.max_total_bytes:
                break
            path.unlink(missing_ok=True)
            total -= sizes[path]
            log.info("request log: deleted %s to stay under %d bytes", path, self.limits.max_total_bytes)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@dataclass
class _Item:
    prefix: str
    model_name: str
    build: Build


class Recorder:
    """A bounded queue and one writer thread for every prefix of a process.

    ``on_drop(model_name, reason)`` is called for each record not written
    (``queue_full`` or ``error``), ``on_write(model_name)`` for each written.
    """

    def __init__(self, queue_size: int = 1024, limits: RotationLimits = RotationLimits(), *,
                 on_drop: Callable[[str, str], None] = lambda m, r: None,
                 on_write: Callable[[str], None] = lambda m: None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        import tensorflow  # noqa: F401  (imported now: a first import in the writer thread would stall requests)

        self.limits = limits
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._on_drop = on_drop
        self._on_write = on_write
        self._files: dict[str, LogFiles] = {}
        self._flushed_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()

    def submit(self, prefix: str, model_name: str, build: Build) -> bool:
        """Queue one record; False (and a counted drop) when the queue is full."""
        try:
            self._queue.put_nowait(_Item(prefix, model_name, build))
            return True
        except queue.Full:
            self._on_drop(model_name, "queue_full")
            return False

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=IDLE_FLUSH_S)
            except queue.Empty:
                self._flush_all()
                continue
            if item is None:
                break
            self._write(item)
            if time.monotonic() - self._flushed_at >= IDLE_FLUSH_S:
                self._flush_all()
        self._close_all()

    def _write(self, item: _Item) -> None:
        try:
            record = item.build()
            if record is None:
                return
            files = self._files.get(item.prefix)
            if files is None:
                files = self._files[item.prefix] = LogFiles(item.prefix, self.limits)
            files.write(record)
            self._on_write(item.model_name)
        except Exception:  # a log that cannot be written must never stop the writer or reach a client
            log.exception("request log: could not write a record of model %s under %s", item.model_name,
                          item.prefix)
            self._on_drop(item.model_name, "error")

    def _flush_all(self) -> None:
        self._flushed_at = time.monotonic()
        self._each("flush")

    def _close_all(self) -> None:
        self._each("close")

    def _each(self, method: str) -> None:
        """Flush or close every model's files; one that fails is logged and the others still get theirs."""
        for files in self._files.values():
            try:
                getattr(files, method)()
            except Exception:
                log.exception("request log: could not %s %s", method, files.prefix)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the files, stop the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("request log: queue still full at shutdown; records in it are lost")
            return
        self._thread.join(timeout)
