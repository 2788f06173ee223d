"""The canary runner interface: one small life cycle shared by every way of running a model server.

Modelled on TFX InfraValidator's ``BaseModelServerRunner`` (start, wait until
running, endpoint, stop), with logs and a context manager added.

Life cycle of a runner (one runner = one server = one canary)::

    runner = make_runner("process" | "docker", spec, **options)
    runner.start()                        # non-blocking; reaps leftovers of killed runs first
    runner.wait_until_available(60.0)     # every spec version AVAILABLE (and every label resolving)
    runner.rest_url, runner.grpc_target   # loopback endpoints, valid between start() and stop()
    runner.logs(tail=200)                 # the server's stdout+stderr; still readable after stop()
    runner.stop()                         # always safe: twice, before start(), after a failed start

- ``start()`` is called at most once per runner; a second call raises.
- ``wait_until_available`` raises at once (without waiting for the deadline)
  when the server exits or reports a spec version as failed
  (:class:`ModelLoadError`, with the log tail); it raises
  :class:`DeadlineExceededError` naming the deadline and the last status seen
  when time runs out. It never stops the server: the caller does, usually by
  leaving the ``with`` block.
- ``stop()`` ends the server and everything it started and removes what the
  runner created (process group, container, temp dirs, pid file). It never
  raises for a server that is already gone.
- A runner whose owning Python process is SIGKILLed cannot run ``stop()``; what
  it leaves is recognisable (pid file, container labels) and :func:`reap`
  removes it, which every ``start()`` does first.

The canary sees only the versions in its :class:`CanarySpec`: runners present
them under ``<base>/<model_name>/<version>`` (symlinks for a process, read-only
bind mounts for a container). With more than one version, or with labels,
a ModelServerConfig text file with the ``specific`` version policy and the
``version_labels`` is generated and passed as ``--model_config_file``.
"""

from __future__ import annotations

import abc
import atexit
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import requests

from servegate.errors import ConfigError
from servegate.model_names import MODEL_NAME_RULE, is_model_name
from servegate.serving.model_state import probe
from servegate.serving.runners.errors import DeadlineExceededError, ModelLoadError, with_log_tail

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# How often wait_until_available asks the server; short, because boot time is what we measure.
POLL_INTERVAL_S = 0.1
# Per-request timeout while polling: a hung server must not stall the deadline check.
REQUEST_TIMEOUT_S = 2.0


class CanarySpecError(ConfigError):
    """A CanarySpec names an invalid model, version, directory or label."""


@dataclass
class CanarySpec:
    """What one canary serves.

    ``versions`` maps a version number to its SavedModel directory (normally in
    the store's staging or production area). ``labels`` maps a version label
    (e.g. ``{"canary": 7, "stable": 6}``) to one of those versions. ``run_id``
    goes into container labels and pid files so that leftovers can be traced
    back to the deploy run that made them.
    """

    model_name: str
    versions: dict[int, Path]
    labels: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None

    def __post_init__(self) -> None:
        if not is_model_name(self.model_name):
            raise CanarySpecError(f"canary model name {self.model_name!r} is invalid: expected {MODEL_NAME_RULE}")
        if not self.versions:
            raise CanarySpecError(f"canary for model {self.model_name!r} has no versions: expected at least one")
        checked: dict[int, Path] = {}
        for version, path in self.versions.items():
            if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
                raise CanarySpecError(
                    f"canary for model {self.model_name!r}: version {version!r} is invalid: "
                    "expected a positive integer")
            path = Path(path)
            if not path.is_dir():
                raise CanarySpecError(
                    f"canary for model {self.model_name!r}: SavedModel directory of version {version} "
                    f"not found: {path}")
            if not ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()):
                raise CanarySpecError(
                    f"canary for model {self.model_name!r}: {path} (version {version}) is not a SavedModel: "
                    "expected saved_model.pb or saved_model.pbtxt in it")
            checked[version] = path.resolve()
        self.versions = dict(sorted(checked.items()))
        for label, version in self.labels.items():
            if not isinstance(label, str) or not _LABEL.match(label):
                raise CanarySpecError(
                    f"canary for model {self.model_name!r}: label {label!r} is invalid: expected a word "
                    "of letters, digits, '_' or '-' starting with a letter or '_'")
            if version not in self.versions:
                raise CanarySpecError(
                    f"canary for model {self.model_name!r}: label {label!r} points at version {version}, "
                    f"which is not among the canary's versions {sorted(self.versions)}")

    @property
    def needs_config_file(self) -> bool:
        """True when the plain ``latest`` policy cannot express the spec (several versions, or labels)."""
        return len(self.versions) > 1 or bool(self.labels)

    def version_list(self) -> str:
        return ",".join(str(v) for v in self.versions)


def model_config_text(spec: CanarySpec, base_path: str) -> str:
    """TensorFlow Serving's ModelServerConfig (text format) serving exactly the spec's versions.

    ``base_path`` is the model's base path as the *server* sees it (a host
    path for a process, ``/models/<name>`` inside a container).
    """
    versions = " ".join(f"versions: {v}" for v in spec.versions)
    lines = [
        "model_config_list {",
        "  config {",
        f'    name: "{spec.model_name}"',
        f'    base_path: "{base_path}"',
        '    model_platform: "tensorflow"',
        f"    model_version_policy {{ specific {{ {versions} }} }}",
    ]
    for label, version in spec.labels.items():
        lines.append(f'    version_labels {{ key: "{label}" value: {version} }}')
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def build_canary_base_path(spec: CanarySpec, root: Path) -> Path:
    """Create ``root/<model_name>/<version>`` symlinks to the spec's version dirs; return the model dir."""
    model_dir = root / spec.model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    for version, path in spec.versions.items():
        (model_dir / str(version)).symlink_to(path, target_is_directory=True)
    return model_dir


# Runners started in this process and not yet stopped: stopped at interpreter exit, so that a run
# that ends without calling stop() (an uncaught exception, sys.exit) leaves nothing behind. A
# SIGKILL skips this; the reaper covers that case.
# (A strong set: a started runner nobody references any more must still be stopped.)
_LIVE: "set[ModelServerRunner]" = set()


@atexit.register
def _stop_live_runners() -> None:
    for runner in list(_LIVE):
        try:
            runner.stop()
        except Exception:  # noqa: BLE001 - best effort at exit; the reaper is the safety net
            pass


class ModelServerRunner(abc.ABC):
    """One model server serving one :class:`CanarySpec`; see the module docstring for the life cycle."""

    kind: ClassVar[str]

    def __init__(self, spec: CanarySpec) -> None:
        self.spec = spec

    def _track(self) -> None:
        """Called by start(): stop this runner at interpreter exit if nobody else does."""
        _LIVE.add(self)

    def _untrack(self) -> None:
        """Called by stop()."""
        _LIVE.discard(self)

    # -- what each runner provides -------------------------------------------------------------
    @abc.abstractmethod
    def start(self) -> None:
        """Start the server without waiting for it; reaps leftovers of killed runs first."""

    @abc.abstractmethod
    def _require_ports(self) -> tuple[int, int]:
        """(REST, gRPC) ports on 127.0.0.1; raises :class:`ServingError` before ``start()``."""

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the REST API (after ``start()``)."""
        return f"http://127.0.0.1:{self._require_ports()[0]}"

    @property
    def grpc_target(self) -> str:
        """``127.0.0.1:PORT`` of the gRPC API (after ``start()``)."""
        return f"127.0.0.1:{self._require_ports()[1]}"

    @abc.abstractmethod
    def logs(self, tail: int = 200) -> str:
        """The last ``tail`` lines of the server's output ("" before start)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server and remove what the runner made; always safe to call."""

    @abc.abstractmethod
    def _exit_status(self) -> str | None:
        """None while the server runs; else a short description ("exited with code 1")."""

    def _retry_after_exit(self, exit_status: str) -> bool:
        """Called when the server exited during the wait; True if the runner restarted it."""
        return False

    # -- shared ---------------------------------------------------------------------------------
    def wait_until_available(self, deadline_s: float) -> None:
        """Block until every spec version is AVAILABLE and every label resolves, within ``deadline_s`` seconds.

        A plain polling loop (rather than tenacity) because each turn must also
        check whether the server died, which ends the wait at once, and must
        remember the last status for the deadline message.
        """
        deadline = time.monotonic() + deadline_s
        last_seen = "no answer yet (REST port not open)"
        session = requests.Session()
        try:
            while True:
                exit_status = self._exit_status()
                if exit_status is not None:
                    if self._retry_after_exit(exit_status):
                        last_seen = "server restarted on new ports"
                        continue
                    raise ModelLoadError(with_log_tail(
                        f"model server for {self.spec.model_name!r} (versions {self.spec.version_list()}, "
                        f"{self!r}) {exit_status} before its versions became AVAILABLE", self.logs(tail=50)))
                ready, last_seen = self._probe(session, last_seen)
                if ready:
                    return
                if time.monotonic() >= deadline:
                    raise DeadlineExceededError(with_log_tail(
                        f"model {self.spec.model_name!r} versions {self.spec.version_list()} not AVAILABLE "
                        f"within the deadline of {deadline_s:g} s ({self!r}); last status seen: {last_seen}",
                        self.logs(tail=30)))
                time.sleep(POLL_INTERVAL_S)
        finally:
            session.close()

    def _probe(self, session: requests.Session, last_seen: str) -> tuple[bool, str]:
        """One round of status requests (the client's :func:`~servegate.serving.model_state.probe`):
        (all ready?, description of what was seen); a version that failed to load ends the wait."""
        seen = probe(session, self.rest_url, self.spec.model_name, self.spec.versions, self.spec.labels,
                     REQUEST_TIMEOUT_S)
        if seen.failed is not None:
            version, state, error = seen.failed
            raise ModelLoadError(with_log_tail(
                f"model {self.spec.model_name!r} version {version} failed to load ({self!r}): "
                f"state {state}, error: {error}", self.logs(tail=50)))
        return seen.ready, seen.said

    def __enter__(self) -> "ModelServerRunner":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
