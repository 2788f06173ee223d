"""The deploy pipeline as plain Python: every step the Prefect flow runs, without Prefect.

::

    export ─► stage ─► canary ─► validate ─┬─► promote ─► verify production ─► done
                                           └─► reject (rolled back)

One :class:`Deployment` is one deploy attempt. Its life cycle:

1. ``Deployment(request)`` resolves the store root, the tracking URI and the
   validation config; ``preflight()`` then checks every input (model path,
   reference file, config, Docker when asked for) *before* anything changes,
   so that bad input is an error naming the thing and production is untouched;
2. ``open_tracking()`` starts the MLflow run (one per attempt);
3. ``export()`` writes the SavedModel into the attempt's work dir and records
   its signature; ``load_reference()`` checks the reference against it;
   ``compute_golden()`` runs the reference inputs through the exported model
   in-process;
4. ``stage()`` puts it into the store as the next version and registers it in
   MLflow (alias ``challenger``); ``undo_stage(reason)`` moves it to
   ``rejected/`` with the reason. First it moves versions that killed deploys
   left in staging to ``rejected/`` (:meth:`Deployment.reject_abandoned_versions`);
5. ``boot_canary()`` starts a server that sees the candidate (label
   ``canary``) and, when production serves one, the production version (label
   ``stable``), and waits until both are AVAILABLE; ``stop_canary()`` is safe
   to call any number of times and is called on every path;
6. ``validate()`` runs the checks and writes the report; a failed verdict
   becomes :class:`ModelRejected` (exit code 1) in ``require_passed()``;
7. ``promote()`` makes the version production's (alias ``champion``);
   ``undo_promote(reason)`` rolls production back to what it served before;
8. ``verify_production()`` (only with a production server URL) waits until
   that server serves the new version and answers a smoke query, else raises
   :class:`ProductionVerificationError`;
9. ``finish(error)`` tags the registry version, logs the report and figures,
   ends the MLflow run (``FAILED`` unless promoted) and returns the
   :class:`DeployOutcome`.

:func:`run_deploy` runs these steps in order with the same undo semantics as
the flow's Prefect transaction; the flow (``servegate.flows.deploy``) calls
the same methods from thin tasks.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from servegate.errors import ConfigError, ServegateError, ServingError, ValidationInputError
from servegate.settings import default_store_root, default_tracking_uri

log = logging.getLogger("servegate.pipeline")

SERVING_KINDS = ("process", "docker")

# What the steps between the MLflow run and validation import that validation's libraries
# (Great Expectations, SciPy, matplotlib) import too; see Deployment._preload_validation.
# (Measured: the modules both sides load, with the MLflow SQLite store and the demo model.)
_SHARED_WITH_VALIDATION = ("sqlite3", "sqlalchemy.orm", "sqlalchemy.connectors.asyncio", "sqlalchemy.dialects.sqlite",
                           "sqlalchemy.dialects.postgresql", "markupsafe", "cryptography.hazmat.primitives.ciphers",
                           "cryptography.hazmat.primitives.hashes", "servegate.validation.reference")


class ModelRejected(ServegateError):
    """Validation failed: the candidate was rejected and production left as it was (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


class ProductionVerificationError(ServingError):
    """The production server did not serve the promoted version, or its smoke query failed."""

    exit_code = 1


@dataclass
class DeployRequest:
    """What one deploy attempt is asked to do (the CLI's flags, the flow's parameters)."""

    model_path: Path
    name: str
    reference: Path
    store_root: Path | None = None
    serving: str = "process"
    config: Path | None = None
    production_url: str | None = None
    tracking_uri: str | None = None
    work_dir: Path | None = None
    docker_image: str | None = None
    canary_deadline_s: float | None = None  # default: the config's load.deadline_s
    production_deadline_s: float = 60.0

    def __post_init__(self) -> None:
        self.model_path = Path(self.model_path)
        self.reference = Path(self.reference)
        self.store_root = Path(self.store_root) if self.store_root else default_store_root()
        self.config = Path(self.config) if self.config else None
        self.tracking_uri = self.tracking_uri or default_tracking_uri()
        self.work_dir = Path(self.work_dir) if self.work_dir else None

    def params(self) -> dict[str, Any]:
        """The request as MLflow parameters."""
        return {
            "model_path": str(self.model_path),
            "reference": str(self.reference),
            "store_root": str(self.store_root),
            "serving": self.serving,
            "config": str(self.config) if self.config else "(defaults)",
            "production_url": self.production_url or "(none)",
        }


@dataclass
class DeployOutcome:
    """The result of one attempt, as the CLI prints it with ``--json``.

    ``verdict``: ``promoted`` (exit 0), ``rejected`` (validation failed, exit
    1), ``rolled_back`` (promoted, then production verification failed and
    production went back; exit 1), ``error`` (exit 2).
    """

    model_name: str
    verdict: str
    version: int | None = None
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    production_version: int | None = None
    previous_production_version: int | None = None
    mlflow_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    registry_version: str | None = None
    prefect_flow_run_id: str | None = None
    report_uri: str | None = None  # the report, Data Docs and plots as MLflow artifacts
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {"promoted": 0, "rejected": 1, "rolled_back": 1}.get(self.verdict, 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


def check_request(request: DeployRequest):
    """The checks that need neither the store nor Prefect: serving kind, model name, model
    file, reference file, validation config, Docker when asked for, an MLflow tracking
    server when the URI names one. Returns the config.

    Cheap (no TensorFlow import), so that the CLI can run them before it starts
    anything and a bad input costs a fraction of a second.
    """
    from servegate import export
    from servegate.validation.config import load_config

    from servegate.model_store.layout import check_model_name
    from servegate.tracking import check_tracking_server

    if request.serving not in SERVING_KINDS:
        raise ConfigError(f"--serving {request.serving!r} is unknown: expected one of {', '.join(SERVING_KINDS)}")
    check_model_name(request.name)  # a name that could leave the store is refused before anything exists
    export.detect_format(request.model_path)
    if not request.reference.exists():
        raise ValidationInputError(f"reference file {request.reference}: no such file")
    if not request.reference.is_file():
        raise ValidationInputError(f"reference file {request.reference}: not a regular file")
    config = load_config(request.config)
    if request.serving == "docker":
        from servegate.serving.runners.docker import connect

        connect()
    check_tracking_server(request.tracking_uri)
    return config


class Deployment:
    """One deploy attempt; see the module docstring for the order of the steps."""

    def __init__(self, request: DeployRequest, progress: Callable[[str], None] | None = None) -> None:
        self.request = request
        self.name = request.name
        self._progress = progress or (lambda message: log.info(message))
        self._own_work_dir = request.work_dir is None
        self.work_dir = request.work_dir or new_work_dir()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config = None
        self.store = None
        self.tracker = None
        self.run_id: str | None = None
        self.flow_run_id: str | None = None
        self.exported = None
        self.reference = None
        self.golden: np.ndarray | None = None
        self.version: int | None = None
        self.registered = None
        self.previous_production: int | None = None
        self.runner = None
        self.report = None
        self.promoted = False
        self.rolled_back = False
        self.failure: BaseException | None = None  # the exception that stopped the attempt
        self._stoppers: list[threading.Thread] = []  # canaries shutting down in the background
        self._preloader: threading.Thread | None = None  # validation's imports, while the canary boots
        self.timings: dict[str, float] = {}

    # ---------------------------------------------------------------- helpers

    def failure_reason(self) -> str:
        exc = self.failure
        if exc is None:
            return "deploy failed"
        return str(exc.args[0]) if exc.args else type(exc).__name__

    def progress(self, message: str) -> None:
        self._progress(message)

    def _timed(self, step: str, started: float) -> None:
        self.timings[step] = round(time.perf_counter() - started, 3)

    # ---------------------------------------------------------------- 1. preflight

    def preflight(self) -> None:
        """Check every input before anything changes; raise a named error for the first bad one."""
        from servegate.model_store import ModelStore

        self.config = check_request(self.request)
        self.store = ModelStore(self.request.store_root)
        # The name is checked by the store; asking for the status proves it and the root are usable.
        status = self.store.status(self.name)
        self.previous_production = status.serving_version

    # ---------------------------------------------------------------- 2. tracking

    def open_tracking(self) -> str:
        self._preload_validation()
        from servegate.tracking import Tracker

        self.tracker = Tracker(self.request.tracking_uri)
        tags = {"servegate.serving": self.request.serving}
        if self.flow_run_id:
            tags["prefect.flow_run_id"] = self.flow_run_id
        self.run_id = self.tracker.start_run(self.name, params=self.request.params(), tags=tags, run_name="deploy")
        return self.run_id

    # ---------------------------------------------------------------- 3. export

    def export(self):
        from servegate import export

        started = time.perf_counter()
        if self.request.serving == "process":
            # The canary's bundled server imports TensorFlow during export, golden and stage
            # (a no-op when the CLI started it already); cleanup() ends it if unused.
            from servegate.serving.runners import warm

            warm.prewarm(self.name)
        self.progress(f"export: {self.request.model_path}")
        self.exported = export.export_model(self.request.model_path, self.work_dir / "savedmodel")
        (self.work_dir / "signature.json").write_text(self.exported.signature.to_json())
        self._timed("export", started)
        return self.exported

    def load_reference(self):
        from servegate.validation import load_reference

        self.reference = load_reference(self.request.reference, self.exported.signature, self.config)
        self.progress(f"reference: {self.reference.n_rows} rows from {self.request.reference}")
        return self.reference

    def compute_golden(self) -> np.ndarray:
        """The exported model's in-process predictions on every reference row."""
        from servegate import export

        started = time.perf_counter()
        output = self.config.output or self.exported.signature.output_names[0]
        loaded = export.load_savedmodel(self.exported.savedmodel_dir)
        fn = loaded.signatures[export.SERVING_SIGNATURE]
        import tensorflow as tf

        dtypes = {t.name: t.dtype for t in self.exported.signature.inputs}
        parts = []
        for batch in self.reference.batches(max(self.config.batch_size, 1024)):
            result = fn(**{k: tf.constant(v, dtype=dtypes[k]) for k, v in batch.items()})
            parts.append(result[output].numpy())
        self.golden = np.concatenate(parts)
        self._timed("golden", started)
        return self.golden

    # ---------------------------------------------------------------- 4. stage

    def stage(self) -> int:
        started = time.perf_counter()
        self.reject_abandoned_versions()
        self.version = self.store.stage(self.name, self.exported.savedmodel_dir, run_id=self.run_id)
        self.progress(f"stage: version {self.version} in {self.store.base_path('staging', self.name)}")
        self._timed("stage", started)
        return self.version

    def reject_abandoned_versions(self) -> list[int]:
        """Move staged versions whose deploy is gone to ``rejected/``; returns them.

        A deploy killed between stage and promote/reject (SIGKILL, a lost CI runner)
        cannot clean up after itself: its version would sit in staging forever. The
        store's history names the process that staged each version; one staged on
        this host by a process that no longer runs is abandoned. A live process's
        version (a deploy running beside this one) is never touched.
        """
        import socket

        from servegate.model_store.locking import pid_alive

        staged = set(self.store.versions(self.name, "staging"))
        if not staged:
            return []
        host = socket.gethostname()
        stagers = {r.version: r for r in self.store.history(self.name) if r.operation == "stage"}
        abandoned = []
        for version in sorted(staged):
            record = stagers.get(version)
            if record is None or record.host != host or pid_alive(record.pid) is not False:
                continue
            try:
                self.store.reject(self.name, version, f"abandoned: the deploy that staged it (pid {record.pid}, "
                                  f"MLflow run {record.run_id}) ended without promoting or rejecting it",
                                  run_id=self.run_id)
            except ServegateError as exc:  # promoted or rejected meanwhile by someone else: fine
                log.info("abandoned version %s of %s: %s", version, self.name, exc)
                continue
            abandoned.append(version)
        if abandoned:
            self.progress(f"stage: versions {abandoned} of killed deploys -> rejected/")
        return abandoned

    def register(self):
        started = time.perf_counter()
        self.registered = self.tracker.register_version(
            self.run_id, self.name, self.store.version_path("staging", self.name, self.version), self.version
        )
        self._timed("register", started)
        return self.registered

    def undo_stage(self, reason: str) -> None:
        """Move the staged version to ``rejected/`` with ``reason`` (no-op when it is not staged)."""
        if self.version is None:
            return
        if not self.store.version_path("staging", self.name, self.version).exists():
            return
        self.store.reject(self.name, self.version, reason, run_id=self.run_id)
        self.progress(f"reject: version {self.version} -> rejected/ ({reason.splitlines()[0]})")

    # ---------------------------------------------------------------- 5. canary

    def canary_spec(self):
        from servegate.serving.runners import CanarySpec

        versions = {self.version: self.store.version_path("staging", self.name, self.version)}
        labels = {"canary": self.version}
        if self.previous_production is not None:
            versions[self.previous_production] = self.store.version_path(
                "production", self.name, self.previous_production
            )
            labels["stable"] = self.previous_production
        return CanarySpec(self.name, versions=versions, labels=labels, run_id=self.run_id)

    def boot_canary(self):
        """Start the canary and wait until it is AVAILABLE; a failed boot leaves nothing running."""
        from servegate.serving.runners import make_runner

        started = time.perf_counter()
        self.stop_canary()  # a retried boot starts from nothing
        options: dict[str, Any] = {}
        if self.request.serving == "docker" and self.request.docker_image:
            options["image"] = self.request.docker_image
        self.runner = make_runner(self.request.serving, self.canary_spec(), **options)
        self._preload_validation()
        deadline = self.request.canary_deadline_s or self.config.load.deadline_s
        self.progress(f"canary: starting ({self.request.serving}), deadline {deadline:.0f} s")
        try:
            self.runner.start()
            self.runner.wait_until_available(deadline)
        except BaseException:
            self.canary_logs_on_failure()
            self.stop_canary()
            raise
        self._timed("canary_boot", started)
        self.progress(f"canary: AVAILABLE at {self.runner.rest_url}")
        return self.runner

    def _preload_validation(self) -> None:
        """Import validation's libraries (SciPy, matplotlib, Great Expectations: seconds) in a
        background thread, from the moment the MLflow run opens: it runs while this thread
        waits on Prefect's API, TensorFlow's kernels, file copies and the canary's boot.
        ``validate()`` joins it first; a failed import is not reported here, ``validate()``'s
        own import raises it."""
        if self._preloader is not None:
            return
        # Modules both this thread's next steps (MLflow's SQLite store, the reference) and
        # validation's libraries import: loaded here first, so that the two threads never
        # import the same module at once (two imports of a module cycle in two threads is
        # the one way Python's import locks can deadlock).
        for module in _SHARED_WITH_VALIDATION:
            importlib.import_module(module)

        def preload() -> None:
            try:
                from servegate import validation

                validation.preload()
            except Exception as exc:  # validate() imports again and raises the real error
                log.debug("preloading validation failed: %s", exc)

        self._preloader = threading.Thread(target=preload, name="preload-validation", daemon=True)
        self._preloader.start()

    def _join_preload(self) -> None:
        if self._preloader is not None:
            self._preloader.join()

    def canary_logs_on_failure(self) -> None:
        """Keep the canary's log tail with the MLflow run (called when something failed)."""
        if self.runner is None or self.tracker is None or self.run_id is None:
            return
        try:
            self.tracker.log_text(self.run_id, self.runner.logs(tail=500), "canary/canary.log")
        except Exception as exc:  # the logs are a courtesy; never mask the real failure
            log.warning("could not keep the canary's logs: %s", exc)

    def stop_canary(self, wait: bool = True) -> None:
        """Stop the canary. ``wait=False`` lets it shut down (about a second: a graceful
        server stop) while promotion goes on; ``cleanup()`` waits for it, so the canary is
        gone before the attempt ends either way."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            if wait:
                runner.stop()
            else:
                stopper = threading.Thread(target=runner.stop, name=f"stop-canary-{self.name}")
                stopper.start()
                self._stoppers.append(stopper)

    def wait_for_canary_stop(self) -> None:
        for stopper in self._stoppers:
            stopper.join()
        self._stoppers.clear()

    # ---------------------------------------------------------------- 6. validate

    def production_signature(self):
        if self.previous_production is None:
            return None
        from servegate import export

        return export.read_signature(self.store.version_path("production", self.name, self.previous_production))

    def _row_progress(self):
        """A validate() progress callback that reports each quarter of the reference rows once."""
        reported: set[tuple[str | int, int]] = set()

        def report(who: str | int, done: int, total: int) -> None:
            quarter = 4 * done // max(total, 1)
            if quarter and (who, quarter) not in reported:
                reported.add((who, quarter))
                self.progress(f"validate: {who}: {done}/{total} reference rows answered")

        return report

    def validate(self):
        self._join_preload()
        from servegate.validation import validate

        started = time.perf_counter()
        self.progress(f"validate: {self.reference.n_rows} reference rows against the canary")
        out_dir = self.work_dir / "report"
        self.report = validate(
            self.runner,
            self.reference,
            self.config,
            candidate="canary",
            baseline="stable" if self.previous_production is not None else None,
            golden=self.golden,
            production_signature=self.production_signature(),
            out_dir=out_dir,
            load_seconds=self.timings.get("canary_boot"),
            model_name=self.name,
            progress=self._row_progress(),
        )
        self._timed("validate", started)
        self.progress(f"validate: verdict {self.report.verdict}")
        return self.report

    def reasons(self) -> list[str]:
        if self.report is None:
            return []
        return [f"{c.name}: {c.message}" for c in self.report.checks if c.status == "failed"]

    def require_passed(self) -> None:
        if self.report.verdict != "passed":
            reasons = self.reasons()
            self.failure = ModelRejected(
                f"model {self.name!r} version {self.version} rejected: " + "; ".join(reasons), reasons
            )
            raise self.failure

    # ---------------------------------------------------------------- 7. promote

    def promote(self) -> None:
        started = time.perf_counter()
        self.store.promote(self.name, self.version, run_id=self.run_id)
        self.promoted = True
        self.tracker.set_champion(self.name, self.version)
        self.progress(f"promote: version {self.version} -> {self.store.base_path('production', self.name)}")
        self._timed("promote", started)

    def undo_promote(self, reason: str) -> None:
        """Production back to the version it served before this attempt; the new one to rejected/."""
        if not self.promoted or self.rolled_back:
            return
        if self.previous_production is None:
            # nothing to go back to: take the new version out of production
            self.store.reject(self.name, self.version, reason, run_id=self.run_id)
        else:
            self.store.rollback(self.name, to_version=self.previous_production, run_id=self.run_id)
        self.rolled_back = True
        self.tracker.set_champion(self.name, self.store.status(self.name).serving_version)
        self.progress(f"rollback: production back to {self.previous_production} ({reason.splitlines()[0]})")

    # ---------------------------------------------------------------- 8. verify production

    def verify_production(self) -> bool:
        """Wait until the production server serves the new version and answers; False when skipped."""
        url = self.request.production_url
        if not url:
            self.progress("verify production: skipped (no production server configured)")
            return False
        started = time.perf_counter()
        self.progress(f"verify production: waiting for {url} to serve version {self.version}")
        verify_served_version(
            url, self.name, self.version, self._smoke_inputs(), self.request.production_deadline_s,
            expected=None if self.golden is None else self.golden[:1],
            output=self.config.output or self.exported.signature.output_names[0],
            atol=self.config.parity.atol, rtol=self.config.parity.rtol,
        )
        self._timed("verify_production", started)
        self.progress(f"verify production: {url} serves version {self.version}")
        return True

    def _smoke_inputs(self) -> dict[str, np.ndarray]:
        batch = next(iter(self.reference.batches(1)))
        return {k: v[:1] for k, v in batch.items()}

    # ---------------------------------------------------------------- 9. finish

    def figures(self) -> dict[str, float]:
        figures = dict(self.report.figures()) if self.report is not None else {}
        for step, seconds in self.timings.items():
            figures[f"time.{step}_s"] = seconds
        return figures

    def finish(self, error: BaseException | None = None) -> DeployOutcome:
        """Record the attempt everywhere and return its outcome. Never raises for tracking trouble
        when an earlier error is already being reported (that error matters more)."""
        if error is None:
            verdict = "promoted"
        elif isinstance(error, ModelRejected):
            verdict = "rejected"
        elif isinstance(error, ProductionVerificationError) and self.rolled_back:
            verdict = "rolled_back"
        else:
            verdict = "error"
        reasons = (
            list(error.reasons) if isinstance(error, ModelRejected) else ([str(error)] if error is not None else [])
        )
        outcome = DeployOutcome(
            model_name=self.name,
            verdict=verdict,
            version=self.version,
            reasons=reasons,
            figures=self.figures(),
            previous_production_version=self.previous_production,
            mlflow_run_id=self.run_id,
            mlflow_tracking_uri=self.request.tracking_uri,
            registry_version=self.registered.registry_version if self.registered else None,
            prefect_flow_run_id=self.flow_run_id,
            timings=dict(self.timings),
        )
        if self.store is not None:
            try:
                outcome.production_version = self.store.status(self.name).serving_version
            except ServegateError:
                pass
        try:
            self._record(outcome)
        except ServegateError:
            if error is None:
                raise
            log.exception("could not record the failed attempt in MLflow")
        return outcome

    def _record(self, outcome: DeployOutcome) -> None:
        if self.tracker is None or self.run_id is None:
            return
        tracker, run_id = self.tracker, self.run_id
        tracker.log_figures(run_id, outcome.figures)
        tracker.set_tags(run_id, {"servegate.verdict": outcome.verdict, "servegate.version": outcome.version})
        if self.registered is not None:
            verdict = self.report.verdict if self.report is not None else outcome.verdict
            if outcome.verdict == "rolled_back":
                verdict = "rolled_back"
            tracker.record_verdict(self.name, self.registered.registry_version, verdict, outcome.reasons)
        if self.report is not None:
            tracker.log_artifacts(run_id, self.work_dir / "report", "report")
            outcome.report_uri = f"{tracker.artifact_uri(run_id)}/report"
        tracker.log_text(run_id, outcome.to_json(), "outcome.json")
        tracker.end_run(run_id, "FINISHED" if outcome.verdict == "promoted" else "FAILED")

    def cleanup(self) -> None:
        self._join_preload()  # never leave an import running into interpreter exit
        self.stop_canary()
        self.wait_for_canary_stop()
        if self.request.serving == "process":
            from servegate.serving.runners import warm

            warm.discard()  # a spare server the attempt did not get to use
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


WORK_DIR_PREFIX = "servegate-deploy-"


def new_work_dir() -> Path:
    """A fresh work dir for one attempt, ``$TMPDIR/servegate-deploy-<pid>-<start ticks>-<random>``.

    ``cleanup()`` removes it; a SIGKILLed attempt cannot, so each new one first
    removes the work dirs of attempts whose process (pid and start time) is gone.
    """
    from servegate.serving.runners import _proc

    pid = os.getpid()
    base = Path(tempfile.gettempdir())
    for entry in base.glob(WORK_DIR_PREFIX + "*"):
        parts = entry.name[len(WORK_DIR_PREFIX):].split("-")
        if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            continue
        if int(parts[0]) != pid and not _proc.is_alive(int(parts[0]), int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{pid}-{_proc.start_ticks(pid)}-"))


def verify_served_version(
    url: str,
    name: str,
    version: int,
    inputs: dict[str, np.ndarray],
    deadline_s: float,
    expected: np.ndarray | None = None,
    poll_s: float = 0.2,
    output: str | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Wait until ``url`` serves ``version`` of ``name`` (AVAILABLE and answering ``inputs``).

    With ``expected`` (the golden prediction for ``inputs``), the answer of
    ``output`` (or the only output) must equal it within ``atol``/``rtol``:
    production computes what the validated canary computed.

    Raises :class:`ProductionVerificationError` naming the server, the
    version and what was seen last when ``deadline_s`` passes, or when the
    smoke answer is not finite or not the expected one.
    """
    from servegate.serving.client import ServingClient

    deadline = time.monotonic() + deadline_s
    last = "no answer yet"
    with ServingClient(name, rest_url=url.rstrip("/")) as client:
        while True:
            try:
                states = client.status()
                available = sorted(
                    int(s["version"]) for s in states if str(s.get("state", "")).upper() == "AVAILABLE"
                )
                last = f"available versions {available}"
                if available and max(available) == version:
                    result = client.predict(inputs)
                    values = np.concatenate([np.asarray(v, dtype="float64").ravel() for v in result.outputs.values()])
                    if not np.all(np.isfinite(values)):
                        raise ProductionVerificationError(
                            f"production server {url}: version {version} of {name!r} answered the smoke "
                            f"query with non-finite values {values[:4].tolist()}"
                        )
                    if expected is not None:
                        outputs = result.outputs
                        answer = outputs[output] if output in outputs or len(outputs) != 1 else next(iter(outputs.values()))
                        answer = np.asarray(answer, dtype="float64").ravel()
                        want = np.asarray(expected, dtype="float64").ravel()
                        if answer.shape != want.shape or not np.allclose(answer, want, atol=atol, rtol=rtol):
                            raise ProductionVerificationError(
                                f"production server {url}: version {version} of {name!r} answered the smoke "
                                f"query with {answer[:4].tolist()}, expected {want[:4].tolist()} "
                                f"(atol {atol}, rtol {rtol})"
                            )
                    return
            except ProductionVerificationError:
                raise
            except ServegateError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise ProductionVerificationError(
                    f"production server {url} did not serve version {version} of {name!r} within "
                    f"{deadline_s:.0f} s (last seen: {last})"
                )
            time.sleep(poll_s)


def run_deploy(
    request: DeployRequest, progress: Callable[[str], None] | None = None, flow_run_id: str | None = None
) -> DeployOutcome:
    """Every step in order, without Prefect; the same undo semantics as the flow.

    Bad input raises before anything changes. Once the MLflow run is open,
    every outcome (promoted, rejected, rolled back, error) is returned, the
    store is left consistent and the canary is stopped.
    """
    dep = Deployment(request, progress)
    dep.flow_run_id = flow_run_id
    try:
        dep.preflight()
        dep.open_tracking()
        error: BaseException | None = None
        try:
            dep.export()
            dep.load_reference()
            dep.compute_golden()
            dep.stage()
            dep.register()
            try:
                dep.boot_canary()
                dep.validate()
            finally:
                if dep.report is None:
                    dep.canary_logs_on_failure()
                dep.stop_canary(wait=False)
            dep.require_passed()
            dep.promote()
            dep.verify_production()
        except BaseException as exc:
            error = exc
            reason = exc.args[0] if exc.args else type(exc).__name__
            dep.undo_promote(f"rolled back: {reason}")
            dep.undo_stage(str(reason))
        outcome = dep.finish(error)
        if error is not None and outcome.verdict == "error":
            raise error
        return outcome
    finally:
        dep.cleanup()


@dataclass
class RollbackOutcome:
    """What ``rollback_model`` did: production before and after, and where it was recorded."""

    model_name: str
    from_version: int | None
    to_version: int | None
    mlflow_run_id: str | None = None
    champion_registry_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_rollback(
    name: str,
    to_version: int | None = None,
    store_root: Path | str | None = None,
    tracking_uri: str | None = None,
    flow_run_id: str | None = None,
) -> RollbackOutcome:
    """Production back to the previous (or the named) version, recorded in the store and MLflow.

    The store does the move (refusing with a clear message when there is
    nothing to go back to); MLflow gets a run tagged ``servegate.action=rollback``
    and the ``champion`` alias follows production.
    """
    from servegate.model_store import ModelStore
    from servegate.tracking import Tracker

    store = ModelStore(Path(store_root) if store_root else default_store_root())
    before = store.status(name).serving_version
    tracker = Tracker(tracking_uri)
    tags = {"servegate.action": "rollback"}
    if flow_run_id:
        tags["prefect.flow_run_id"] = flow_run_id
    run_id = tracker.start_run(
        name, params={"to_version": to_version if to_version is not None else "(previous)"}, tags=tags,
        run_name="rollback",
    )
    try:
        store.rollback(name, to_version=to_version, run_id=run_id)
    except BaseException as exc:
        tracker.log_text(run_id, str(exc), "error.txt")
        tracker.end_run(run_id, "FAILED")
        raise
    after = store.status(name).serving_version
    champion = tracker.set_champion(name, after)
    tracker.log_figures(run_id, {"from_version": before or 0, "to_version": after or 0})
    tracker.end_run(run_id, "FINISHED")
    return RollbackOutcome(name, before, after, run_id, champion)
