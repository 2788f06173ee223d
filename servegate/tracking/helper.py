"""A :class:`~servegate.tracking.Tracker` in a helper process, so that MLflow never loads in the caller.

Importing MLflow and opening its SQLite store cost a deploy about 2 CPU-s, on
the CLI's critical path (the export, then the flow, in one process). The CLI
launches this helper once the local Prefect server's and the spare canary's
starts are done, or when its checks (the export included) passed, whichever
comes first (:mod:`servegate.deploy.helper_start`): beside those starts the
import slowed the export by as much as it saved. MLflow imports at once; the
store opens only when :meth:`TrackerHelper.open_soon` asks, after the checks
passed (a store opened before them would be left behind by a refused input). Then
it runs the tracker's methods the deploy calls, one at a time, for as long as
the CLI lives. Nothing else changes:

- every call waits for its answer, so what the deploy wrote to MLflow is
  written before the next step starts, as in-process;
- a failure to open the store is raised at the first call (the "open MLflow
  run" step), as in-process, with the same :class:`TrackingError`; any other
  exception comes back as itself;
- runs opened by the helper name the CLI process as their owner
  (:mod:`servegate.tracking.owner`), and the helper ends with it (end of its
  input, and SIGKILL at the CLI's death on Linux), so a killed deploy's run is
  still found abandoned by the next one;
- the helper ignores SIGINT and SIGTERM: a Ctrl-C or a cancel sent to the whole
  process group is the CLI's to handle, and the CLI records the cancelled
  attempt in MLflow through the helper afterwards;
- a helper that died is a :class:`TrackingError` naming the tracking URI.

Protocol: length-prefixed pickles on the helper's stdin and on a copy of its
original stdout (its stdout itself goes to stderr, so library output never
mixes with answers). Only this process's own child reads them.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from types import SimpleNamespace
from typing import Any, BinaryIO

from servegate.errors import TrackingError

_HEADER = struct.Struct("!Q")
OPEN = "__open__"  # the request to open the store now (answered None, or with the error)


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class TrackerHelper:
    """The caller's side: the same methods as :class:`~servegate.tracking.Tracker`, run in the helper."""

    def __init__(self, tracking_uri: str | None, process: subprocess.Popen) -> None:
        from servegate.settings import default_tracking_uri

        self.tracking_uri = tracking_uri or default_tracking_uri()
        self._process = process
        self._lock = threading.Lock()  # one call at a time: Prefect may run steps in other threads
        self._unread = 0  # answers to open_soon() not read yet

    @classmethod
    def launch(cls, tracking_uri: str | None) -> "TrackerHelper":
        from servegate.runtime.identity import ProcessIdentity

        argv = [sys.executable, "-m", "servegate.tracking.helper", str(ProcessIdentity.current())]
        if tracking_uri:
            argv.append(tracking_uri)
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                                   preexec_fn=_end_with_parent if sys.platform.startswith("linux") else None)
        return cls(tracking_uri, process)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, args, kwargs)

        method.__name__ = name
        return method

    def open_soon(self) -> None:
        """Have the helper open the store now, without waiting; its failure is raised by the next call."""
        with self._lock:
            try:
                _send(self._process.stdin, (OPEN, (), {}))
                self._unread += 1
            except OSError:
                pass  # a helper that died is reported by the next call

    def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        with self._lock:
            try:
                _send(self._process.stdin, (name, args, kwargs))
                for _ in range(self._unread):
                    _receive(self._process.stdout)  # the store's opening: its error, if any, comes again
                self._unread = 0
                ok, value = _receive(self._process.stdout)
            except (EOFError, OSError, pickle.PickleError) as exc:
                code = self._process.poll()
                raise TrackingError(f"MLflow at {self.tracking_uri}: the tracking helper process ended "
                                    f"(exit status {code}) during {name}: {exc}", subject=self.tracking_uri) from exc
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """End the helper (its input closes; it exits when its current call is answered)."""
        process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            process.stdin.close()
            process.wait()


_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """preexec_fn (Linux): SIGKILL the helper when the thread that started it dies; SIGINT and SIGTERM
    ignored from the exec on (an ignored signal stays ignored in the new interpreter)."""
    import ctypes
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _plain(value: Any) -> Any:
    """An MLflow entity (a registry version: ``find_version``, ``alias_version``) as a namespace of its
    properties, so that reading the answer does not import MLflow into the caller."""
    from mlflow.entities._mlflow_object import _MlflowObject

    if isinstance(value, _MlflowObject):
        return SimpleNamespace(**{key: _plain(item) for key, item in value})
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class _Opened:
    """The helper's tracker, opened at the first request (``open_soon`` or a call); its error is kept."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self.tracker: Any = None
        self.error: BaseException | None = None

    def answer(self, request: tuple) -> tuple[bool, Any]:
        from servegate.tracking import Tracker

        name, args, kwargs = request
        if self.tracker is None and self.error is None:
            try:
                self.tracker = Tracker(self.tracking_uri)
            except Exception as exc:  # raised by every call, the first being where the deploy opens its run
                self.error = exc
        if self.error is not None:
            return False, self.error
        if name == OPEN:
            return True, None
        try:
            return True, _plain(getattr(self.tracker, name)(*args, **kwargs))
        except Exception as exc:  # the caller raises it: the step fails as it would in-process
            return False, exc


def _import_mlflow() -> None:
    """What opening the store imports (MLflow and its SQLAlchemy stores), without creating anything."""
    import mlflow  # noqa: F401
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    import servegate.tracking  # noqa: F401


def serve(owner: str, tracking_uri: str | None) -> int:
    """The helper's side: import MLflow, then answer requests until the input ends."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):  # the CLI's to handle; it still needs this helper then
        signal.signal(signum, signal.SIG_IGN)
    requests = os.fdopen(0, "rb")
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # MLflow's and alembic's prints go to stderr, never into the answers
    from servegate.runtime.identity import ProcessIdentity
    from servegate.tracking import owner as owners

    owners.act_for(ProcessIdentity.parse(owner))
    _import_mlflow()
    opened = _Opened(tracking_uri)
    while True:
        try:
            request = _receive(requests)
        except EOFError:
            return 0
        ok, value = opened.answer(request)
        try:
            _send(answers, (ok, value))
        except (pickle.PickleError, TypeError, AttributeError) as exc:
            _send(answers, (False, TrackingError(f"MLflow at {tracking_uri}: {request[0]}: {value!r} ({exc})")))


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
