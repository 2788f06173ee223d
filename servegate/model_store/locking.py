"""The per-model lock, and the markers that keep an unlocked copy's temp dir alive.

**Model lock.** ``<root>/.servegate/<model>/lock`` is locked with ``flock``
(through :mod:`filelock`). The kernel drops a ``flock`` when the process that
holds it dies, however it dies, so a dead holder's lock is simply taken over by
the next waiter: there is no lock file to delete and nothing to guess. The
holder also writes ``holder.json`` (pid, host, since, operation, run id) so
that a waiter that gives up can say who holds the lock and since when; the file
is removed on release, and a stale one (holder killed) is overwritten by the
next holder.

The lock is reentrant within a thread (``store.lock(name)`` around
``store.promote(...)`` works) and exclusive between threads and processes. One
:class:`filelock.FileLock` object per lock file per process makes that so.

``flock`` needs a local filesystem (or NFSv4 with working locks); the store
refuses to fall back to a lock that a dead holder would leave behind.

**In-flight markers.** ``stage`` copies a SavedModel without holding the model
lock (a big copy must not block promotions). Its temp directory is protected
by a marker, ``inflight/<token>``, that the stager holds ``flock``'ed while it
copies. Recovery removes a temp directory only when nobody holds its marker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import filelock

from servegate.model_store import fsutil
from servegate.model_store.errors import LockTimeout, StoreIOError
from servegate.runtime.identity import ProcessIdentity

_registry: dict[str, filelock.FileLock] = {}
_registry_guard = threading.Lock()
_depths = threading.local()
#: lock files held with share_with_threads=True by some thread of this process
_shared: set[str] = set()


def _reset_after_fork() -> None:
    # A forked child does not hold its parent's locks (it must wait like anyone
    # else), and filelock refuses instances inherited across fork.
    global _registry, _registry_guard, _depths, _shared
    _registry, _registry_guard, _depths, _shared = {}, threading.Lock(), threading.local(), set()


os.register_at_fork(after_in_child=_reset_after_fork)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _filelock_for(path: Path) -> filelock.FileLock:
    key = os.path.realpath(path)  # one instance per lock file per process
    with _registry_guard:
        lock = _registry.get(key)
        if lock is None:
            # preserve_lock_file: the lock file is created once and kept, so that
            # waiters share one inode and taking the lock changes nothing on disk;
            # it also rules out filelock's "soft" fallback, which would not be
            # released when its holder dies.
            lock = filelock.FileLock(key, preserve_lock_file=True)
            _registry[key] = lock
        return lock


def _depth_map() -> dict[str, int]:
    if not hasattr(_depths, "map"):
        _depths.map = {}
    return _depths.map


def read_holder(holder_file: Path) -> dict | None:
    try:
        data = json.loads(holder_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "a process that left no holder information"
    text = f"pid {holder.get('pid')} on host {holder.get('host')}"
    owner = ProcessIdentity.from_dict(holder)
    if owner is not None and owner.is_dead():
        text += " (no longer running: a process it started may still hold the lock file open)"
    text += f" since {holder.get('since')}"
    details = [f"operation {holder['operation']}"] if holder.get("operation") else []
    if holder.get("run_id"):
        details.append(f"run {holder['run_id']}")
    if details:
        text += f" ({', '.join(details)})"
    return text


def lock_is_held(lock_file: Path) -> bool:
    """Whether some open file description holds ``lock_file`` now (this process's included). Changes nothing."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class ModelLock:
    """The lock of one model in one store."""

    def __init__(self, model: str, lock_file: Path, holder_file: Path):
        self.model = model
        self.lock_file = Path(lock_file)
        self.holder_file = Path(holder_file)

    @contextlib.contextmanager
    def hold(self, *, timeout: float | None, operation: str, run_id: str | None = None,
             share_with_threads: bool = False) -> Iterator[dict]:
        """Hold the lock for the ``with`` block; raise :class:`LockTimeout` after ``timeout`` s (None: forever).

        Reentrant in the holding thread. With ``share_with_threads``, other
        threads of this process pass too while the block runs (for a flow that
        holds the lock while its tasks run in worker threads; the block must
        outlast their store calls). Yields the holder record of the outermost holder.
        """
        key = os.path.realpath(self.lock_file)
        depths = _depth_map()
        if depths.get(key, 0) > 0 or key in _shared:  # reentrant: this thread (or a sharing one) holds it
            depths[key] = depths.get(key, 0) + 1
            try:
                yield read_holder(self.holder_file) or {}
            finally:
                depths[key] -= 1
            return

        lock = _filelock_for(self.lock_file)
        started = time.monotonic()
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout, poll_interval=0.02)
        except filelock.Timeout:
            waited = time.monotonic() - started
            holder = read_holder(self.holder_file)
            raise LockTimeout(
                f"model {self.model!r} is locked by {describe_holder(holder)}; "
                f"gave up after waiting {waited:.1f} s for {self.lock_file} "
                f"(lock timeout {timeout:g} s)",
                holder=holder, waited=waited, subject=str(self.lock_file),
            ) from None
        except OSError as exc:
            raise StoreIOError(f"cannot lock model {self.model!r} with {self.lock_file}: {exc}") from exc
        depths[key] = 1
        if share_with_threads:
            _shared.add(key)
        try:
            holder = {
                **ProcessIdentity.current().to_dict(),  # pid, ticks (its start time), host
                "since": now_iso(),
                "operation": operation,
                "run_id": run_id,
                "thread": threading.current_thread().name,
            }
            # Advisory only: no fsync (after a power loss a torn holder file just reads as "unknown").
            tmp = self.holder_file.with_name(f".tmp-{self.holder_file.name}-{os.getpid()}-{os.urandom(4).hex()}")
            tmp.write_text(json.dumps(holder))
            os.replace(tmp, self.holder_file)
            fsutil.checkpoint("lock:acquired")
            yield holder
        finally:
            depths[key] = 0
            _shared.discard(key)
            fsutil.checkpoint("lock:releasing")
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.holder_file)
            finally:
                lock.release()


class InflightMarker:
    """A file held ``flock``'ed by the process that owns a temp directory, for as long as it works on it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def create(self) -> InflightMarker:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, json.dumps({**ProcessIdentity.current().to_dict(), "since": now_iso()}).encode())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        finally:
            os.close(self._fd)
            self._fd = None


def marker_is_live(path: Path) -> bool:
    """Whether a live process holds this in-flight marker."""
    return lock_is_held(path)
