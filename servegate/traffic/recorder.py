"""Write request logs as TensorFlow Serving's ``PredictionLog`` TFRecord files, off the request path.

A request thread only decides to log (sampling) and appends an item to a
bounded queue: a plain ``deque`` append, with no lock and no wake-up of the
writer. The item is a finished record (the bundled server builds it on the
request thread) or a function that builds it (the tap). One writer thread
wakes every ``DRAIN_INTERVAL_S`` (or at once when the queue is half full),
builds what is still to build, appends every queued record and flushes.
Waking the writer for each request would make it contend for the GIL with
the request threads on every request. When the queue
is full the item is dropped and counted: logging never makes a request wait or
fail, and a slow disk shows up as drops, not as latency. The bound is checked
without a lock, so the queue may pass it by at most one item per request
thread.

Files are ``<filename_prefix>-<UTC time>-<pid>-<sequence>.tfrecord``, created
with mode 0600 (the payloads are the clients' data and may be personal), in a
directory created with mode 0700 when missing. A file is closed and a new one
opened once it would pass ``max_file_bytes``; after each rotation the oldest
files of the same prefix are deleted until the closed files plus one full file
fit in ``max_total_bytes``. The records of each wake-up are flushed together,
so a reader sees them within a fraction of a second.

TensorFlow's own TFRecord writer does the framing and CRC32C (C++, fast); it
is imported when the recorder starts, not on the first request.
"""

from __future__ import annotations

import collections
import glob
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("servegate.traffic")

FILE_SUFFIX = ".tfrecord"
FRAMING_BYTES = 16  # TFRecord: 8-byte length, 4-byte length CRC, payload, 4-byte payload CRC
DRAIN_INTERVAL_S = 0.05

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


class Recorder:
    """A bounded queue and one writer thread for every prefix of a process.

    ``on_drop(model_name, reason)`` is called for each record not written
    (``queue_full`` or ``error``), ``on_write(model_name, count)`` after each
    wake-up with the records written for that model.
    """

    def __init__(self, queue_size: int = 1024, limits: RotationLimits = RotationLimits(), *,
                 on_drop: Callable[[str, str], None] = lambda m, r: None,
                 on_write: Callable[[str, int], None] = lambda m, n: None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        import tensorflow  # noqa: F401  (imported now: a first import in the writer thread would stall requests)

        self.limits = limits
        self._capacity = queue_size
        self._wake_at = max(1, queue_size // 2)
        # (prefix, model name, build): a tuple, the cheapest record to make on the request thread
        self._items: collections.deque[tuple[str, str, Build | bytes]] = collections.deque()
        self._on_drop = on_drop
        self._on_write = on_write
        self._files: dict[str, LogFiles] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()

    def has_room(self, model_name: str) -> bool:
        """Whether the queue takes one more record; False (and a counted drop) when it is full, so a
        caller that builds the record before ``submit`` does not build one to drop."""
        if len(self._items) >= self._capacity:
            self._on_drop(model_name, "queue_full")
            return False
        return True

    def submit(self, prefix: str, model_name: str, build: "Build | bytes") -> bool:
        """Queue one record, built (bytes) or to build on the writer thread; False (and a counted drop)
        when the queue is full."""
        if not self.has_room(model_name):
            return False
        self._items.append((prefix, model_name, build))
        if len(self._items) >= self._wake_at:
            self._wake.set()
        return True

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()  # read before draining: what was queued before close() is written
            self._drain()
            if stopping:
                break
            self._wake.wait(DRAIN_INTERVAL_S)
            self._wake.clear()
        self._close_all()

    def _drain(self) -> None:
        """Write every queued item (one at a time, so a full queue frees up as it goes), then flush."""
        written: dict[str, int] = {}
        while self._items:
            prefix, model_name, build = self._items.popleft()
            if self._write(prefix, model_name, build):
                written[model_name] = written.get(model_name, 0) + 1
        if written:
            self._each("flush")
            for model_name, count in written.items():
                self._on_write(model_name, count)

    def _write(self, prefix: str, model_name: str, build: Build | bytes) -> bool:
        try:
            record = build if isinstance(build, bytes) else build()
            if record is None:
                return False
            files = self._files.get(prefix)
            if files is None:
                files = self._files[prefix] = LogFiles(prefix, self.limits)
            files.write(record)
            return True
        except Exception:  # a log that cannot be written must never stop the writer or reach a client
            log.exception("request log: could not write a record of model %s under %s", model_name, prefix)
            self._on_drop(model_name, "error")
            return False

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
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("request log: the writer did not finish within %g s; records still queued are lost",
                        timeout)
