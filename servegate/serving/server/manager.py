"""Which versions are loaded, and the routing of requests to them.

One :class:`ModelManager` per served model watches its base path (a thread
polling every ``--file_system_poll_wait_seconds``), applies the version policy,
loads and unloads versions, and answers lookups by latest / version / label.
:class:`ServableManager` holds the managers of all models.

Invariants (TensorFlow Serving's availability-preserving policy):

- Only directories whose names are all digits are versions (``00000123`` is
  version 123); anything else, such as the store's ``.tmp-*`` directories, is
  ignored.
- A new version is loaded completely before any older one unloads, so a
  request never finds the model without a servable during a swap.
- A version that fails to load (after ``--max_num_load_retries`` retries) is
  recorded in state ``END`` with its error; it is not retried while its
  directory stays on disk, and the versions already serving keep serving.
  Its retries stop as soon as its directory disappears.
- A version still on disk but no longer wanted by the policy unloads only once
  some wanted version is ``AVAILABLE``; a version whose directory disappeared
  unloads at once.
- Unloading waits for in-flight requests: :meth:`ModelManager.acquire` holds a
  reference, and the session is closed when the last one is released.

Life cycle: ``ServableManager(models, ...)`` -> :meth:`ServableManager.start`
(the first load of every model, synchronously; raises
:class:`StartupError` when a model cannot become available) -> requests ->
:meth:`ServableManager.stop` (stops polling, unloads everything).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from servegate.errors import ServingError
from servegate.serving.server.model_config import ModelConfig
from servegate.serving.server.status import StatusError

log = logging.getLogger("servegate.serving.server")

_VERSION_DIR = re.compile(r"^[0-9]+$")

# TensorFlow Serving's ServableState::ManagerState names, as printed in status.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class StartupError(ServingError):
    """A model could not become available at start-up: the server must exit non-zero."""


@dataclass(frozen=True)
class VersionStatus:
    """One line of a model's status: TensorFlow Serving's ``ModelVersionStatus``."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass
class _Version:
    version: int
    path: Path
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    servable: object | None = None  # a LoadedVersion while LOADING..UNLOADING
    refs: int = 0
    failed: bool = False  # failed to load: not retried while its directory stays


def list_versions(base_path: Path) -> dict[int, Path]:
    """Numbered version directories under ``base_path`` ({version: path}); others are ignored.

    When two names denote the same number (``7`` and ``007``), the first in
    sorted order wins, so the choice is stable between polls.
    """
    found: dict[int, Path] = {}
    for entry in sorted(base_path.iterdir()):
        if _VERSION_DIR.match(entry.name) and entry.is_dir():
            found.setdefault(int(entry.name), entry)
    return found


class ModelManager:
    """The versions of one model (see the module docstring for the invariants)."""

    def __init__(
        self,
        config: ModelConfig,
        loader: Callable[[str, int, Path], object],
        max_num_load_retries: int,
        load_retry_interval_s: float,
    ) -> None:
        self.config = config
        self.name = config.name
        self._loader = loader
        self._max_retries = max_num_load_retries
        self._retry_interval_s = load_retry_interval_s
        self._versions: dict[int, _Version] = {}
        self._lock = threading.Condition()
        self._stopping = threading.Event()

    # ------------------------------------------------------------- polling

    def poll_once(self) -> None:
        """One pass: read the base path, load what the policy wants, unload what it no longer wants."""
        base = self.config.base_path
        try:
            on_disk = list_versions(base)
        except FileNotFoundError:
            log.warning("Could not find base path %s for servable %s", base, self.name)
            on_disk = {}
        except OSError as exc:
            log.warning("Cannot list base path %s for servable %s: %s", base, self.name, exc)
            return
        if not on_disk:
            log.warning("No versions of servable %s found under base path %s", self.name, base)
        with self._lock:
            for record in self._versions.values():
                if record.failed and record.version not in on_disk:
                    record.failed = False  # gone: a directory of that number later on is a new attempt
            aspired = self.config.policy.aspired(set(on_disk))
            to_load = [v for v in sorted(aspired, reverse=True) if not self._is_live(v) and not self._has_failed(v)]
        for version in to_load:
            if self._stopping.is_set():
                return
            self._load(version, on_disk[version])
        with self._lock:
            any_aspired_available = any(
                r.state == AVAILABLE for v, r in self._versions.items() if v in aspired
            )
            for version, record in list(self._versions.items()):
                if record.state != AVAILABLE:
                    continue
                if version not in on_disk or (version not in aspired and any_aspired_available):
                    self._begin_unload(record)

    def _has_failed(self, version: int) -> bool:
        record = self._versions.get(version)
        return record is not None and record.failed

    def _is_live(self, version: int) -> bool:
        record = self._versions.get(version)
        return record is not None and record.state in (LOADING, AVAILABLE)

    def _load(self, version: int, path: Path) -> None:
        record = _Version(version, path, state=LOADING)
        with self._lock:
            self._versions[version] = record
        log.info("Loading servable version {name: %s version: %d} from %s", self.name, version, path)
        attempts = 1 + self._max_retries
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                servable = self._loader(self.name, version, path)
            except StatusError as exc:
                log.error("Loading servable {name: %s version: %d} failed (attempt %d of %d): %s",
                          self.name, version, attempt, attempts, exc.message)
                error = exc
                if attempt < attempts and self._wait_to_retry(path):
                    continue
                with self._lock:
                    record.state, record.failed = END, True
                    record.error_code, record.error_message = error.code, error.message
                    self._lock.notify_all()
                return
            with self._lock:
                if self._stopping.is_set():
                    servable.close()
                    record.state = END
                    return
                record.servable, record.state = servable, AVAILABLE
                self._lock.notify_all()
            log.info("Successfully loaded servable version {name: %s version: %d} in %.2f s",
                     self.name, version, time.monotonic() - started)
            return

    def _wait_to_retry(self, path: Path) -> bool:
        """Wait out the retry interval; False when the server stops or the version's directory goes.

        A version whose directory disappeared is no longer aspired, and, as TensorFlow Serving cancels
        the load retries of a version that stopped being aspired, its retries stop at once: otherwise a
        version rolled back while it was loading would hold this model's polling thread for minutes, and
        the version promoted next would wait behind it.
        """
        deadline = time.monotonic() + self._retry_interval_s
        while True:
            if not path.is_dir():
                log.info("Not retrying servable {name: %s}: %s is gone", self.name, path)
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._stopping.wait(min(left, 0.5)):
                return False

    def _begin_unload(self, record: _Version) -> None:
        # Caller holds the lock. The record leaves routing now; the session closes with the last reference.
        log.info("Unloading servable version {name: %s version: %d}", self.name, record.version)
        record.state = UNLOADING
        if record.refs == 0:
            self._finish_unload(record)

    def _finish_unload(self, record: _Version) -> None:
        servable, record.servable = record.servable, None
        record.state = END
        if servable is not None:
            servable.close()
        log.info("Done unloading servable version {name: %s version: %d}", self.name, record.version)

    def poll_forever(self, interval_s: float) -> None:
        """The polling thread's body: poll every ``interval_s`` until :meth:`stop` (0: never again)."""
        while interval_s > 0 and not self._stopping.wait(interval_s):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the thread; the next one tries again
                log.exception("Polling servable %s failed", self.name)

    def stop(self) -> None:
        """Stop polling and unload every version (each once its in-flight requests finished)."""
        self._stopping.set()
        with self._lock:
            for record in self._versions.values():
                if record.state == AVAILABLE:
                    self._begin_unload(record)

    # -------------------------------------------------------------- lookups

    def available_versions(self) -> list[int]:
        with self._lock:
            return sorted(v for v, r in self._versions.items() if r.state == AVAILABLE)

    def statuses(self) -> list[VersionStatus]:
        """Every version this server has seen, highest first (as TensorFlow Serving lists them)."""
        with self._lock:
            return [
                VersionStatus(r.version, r.state, r.error_code, r.error_message)
                for r in sorted(self._versions.values(), key=lambda r: -r.version)
            ]

    def resolve_label(self, label: str) -> int:
        try:
            return self.config.labels[label]
        except KeyError:
            raise StatusError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}") from None

    @contextmanager
    def acquire(self, version: int | None = None, label: str | None = None) -> Iterator[object]:
        """The servable for latest (highest AVAILABLE) / ``version`` / ``label``, held for the block.

        Raises :class:`StatusError` NOT_FOUND with TensorFlow Serving's
        "Servable not found for request: Latest(NAME)" / "Specific(NAME, N)".
        """
        if label is not None:
            version = self.resolve_label(label)
        with self._lock:
            if version is None:
                live = [r for r in self._versions.values() if r.state == AVAILABLE]
                record = max(live, key=lambda r: r.version) if live else None
                if record is None:
                    raise StatusError("NOT_FOUND", f"Servable not found for request: Latest({self.name})")
            else:
                record = self._versions.get(version)
                if record is None or record.state != AVAILABLE:
                    raise StatusError("NOT_FOUND", f"Servable not found for request: Specific({self.name}, {version})")
            record.refs += 1
        try:
            yield record.servable
        finally:
            with self._lock:
                record.refs -= 1
                if record.refs == 0 and record.state == UNLOADING:
                    self._finish_unload(record)

    def settled(self) -> bool:
        """True when no version is loading and some version reached a final state (start-up is over)."""
        with self._lock:
            states = [r.state for r in self._versions.values()]
        return bool(states) and LOADING not in states


class ServableManager:
    """All served models: start-up loading, polling threads, lookups by model name."""

    def __init__(
        self,
        models: list[ModelConfig],
        loader: Callable[[str, int, Path], object],
        poll_wait_s: float = 1.0,
        max_num_load_retries: int = 5,
        load_retry_interval_s: float = 60.0,
        allow_version_labels_for_unavailable_models: bool = False,
    ) -> None:
        self.models = {
            m.name: ModelManager(m, loader, max_num_load_retries, load_retry_interval_s) for m in models
        }
        self._poll_wait_s = poll_wait_s
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    def start(self) -> None:
        """Load every model's first versions (blocking), check labels, then start polling.

        Like TensorFlow Serving: waits while a base path has no versions yet
        (polling), and raises :class:`StartupError` when a base path does not
        exist, when a wanted version failed all its load attempts, or when a
        label names a version that is not available.
        """
        for manager in self.models.values():
            base = manager.config.base_path
            if not base.is_dir():
                raise StartupError(f"Could not find base path {base} for servable {manager.name}")
        for manager in self.models.values():
            manager.poll_once()
            while not manager.settled():
                if self._stopped.wait(max(self._poll_wait_s, 0.1)):
                    return
                manager.poll_once()
            failed = [s for s in manager.statuses() if s.state == END and s.error_code != "OK"]
            if failed:
                first = failed[0]
                raise StartupError(
                    f"Loading servable {{name: {manager.name} version: {first.version}}} failed: "
                    f"{first.error_code}: {first.error_message}"
                )
            if not self._allow_unavailable_labels:
                available = set(manager.available_versions())
                for label, version in sorted(manager.config.labels.items()):
                    if version not in available:
                        raise StartupError(
                            f"Request to assign label {label!r} to version {version} of model {manager.name}, "
                            "which is not currently available for inference"
                        )
        for manager in self.models.values():
            thread = threading.Thread(
                target=manager.poll_forever, args=(self._poll_wait_s,), name=f"poll-{manager.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    @contextmanager
    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Iterator[object]:
        """Hold the servable a request addresses (see :meth:`ModelManager.acquire`).

        An unknown model is NOT_FOUND with the same wording as an unknown version.
        """
        manager = self.models.get(name)
        if manager is None:
            if version is None and label is None:
                raise StatusError("NOT_FOUND", f"Servable not found for request: Latest({name})")
            if label is not None:
                raise StatusError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            raise StatusError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
        with manager.acquire(version, label) as servable:
            yield servable

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """TensorFlow Serving's GetModelStatus: all versions, or the one ``version``/``label`` names."""
        manager = self.models.get(name)
        statuses = manager.statuses() if manager is not None else []
        if not statuses:
            raise StatusError("NOT_FOUND", f"Could not find any versions of model {name}")
        if label is not None:
            version = manager.resolve_label(label)
        if version is None:
            return statuses
        chosen = [s for s in statuses if s.version == version]
        if not chosen:
            raise StatusError("NOT_FOUND", f"Could not find version {version} of model {name}")
        return chosen

    def stop(self) -> None:
        self._stopped.set()
        for manager in self.models.values():
            manager.stop()
        for thread in self._threads:
            thread.join(timeout=5)
