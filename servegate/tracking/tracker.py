"""MLflow tracking for deploy attempts, and the registry that mirrors the store.

Life cycle, as the deploy pipeline drives it:

1. ``Tracker(uri)`` — one client on one tracking store (default: the SQLite
   file from :func:`servegate.settings.default_tracking_uri`; the environment
   variable ``MLFLOW_TRACKING_URI`` overrides it). The registry uses the same URI.
2. ``start_run(model, params)`` — one run per deploy attempt, in the
   experiment ``servegate/<model>`` (created on first use; with a SQLite store
   its artifacts live in ``artifacts/`` beside the database file).
3. ``log_figures`` / ``log_artifact`` / ``log_artifacts`` / ``log_text`` while
   the run is open.
4. ``register_version`` — logs the staged SavedModel as the run's artifacts
   (``savedmodel/``) and creates a registry model version whose source is that
   artifact path, tagged ``serving_version``; the alias ``challenger`` moves to it.
5. ``record_verdict`` tags the version with ``verdict`` and ``reasons``;
   ``set_champion(model, serving_version)`` moves ``champion`` to the registry
   version of the version production serves (also on rollback).
6. ``end_run(status)`` — ``FINISHED`` or ``FAILED``; every run is ended once.
   A run whose deploy was killed before it could end it is ended ``KILLED`` by
   the next ``start_run`` in its experiment (runs carry their owner's pid).

The class holds no global MLflow state (no ``mlflow.start_run``): it uses an
explicit :class:`mlflow.MlflowClient`, so two pipelines in one process, or a
Prefect task thread, cannot pick up each other's active run.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlparse

from servegate.errors import TrackingError
from servegate.serving.runners import _proc
from servegate.settings import default_tracking_uri

log = logging.getLogger("servegate.tracking")

CHAMPION = "champion"
CHALLENGER = "challenger"
SAVEDMODEL_ARTIFACT_PATH = "savedmodel"
EXPERIMENT_PREFIX = "servegate/"
OWNER_PID_TAG = "servegate.owner_pid"
OWNER_TICKS_TAG = "servegate.owner_ticks"
OWNER_HOST_TAG = "servegate.owner_host"
_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


@dataclass(frozen=True)
class RegisteredVersion:
    """A registry model version that mirrors one store version."""

    model_name: str
    registry_version: str
    serving_version: int
    source: str
    run_id: str


def metric_key(name: str) -> str:
    """A metric name MLflow accepts (alphanumerics, ``_-. /``); others become ``_``."""
    return _METRIC_KEY_BAD.sub("_", name)[:250]


def _sqlite_dir(uri: str) -> Path | None:
    if not uri.startswith("sqlite:"):
        return None
    path = urlparse(uri).path
    # sqlite:////abs/path -> path "//abs/path"; sqlite:///rel -> "/rel"
    if uri.startswith("sqlite:////"):
        return Path(path[1:]).parent
    return Path(path.lstrip("/")).resolve().parent


def check_tracking_server(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """For an ``http(s)://`` tracking URI, check that the MLflow server answers ``/health``.

    MLflow's own client retries an unreachable server for minutes; a deploy
    asks once, up front, and fails with a message naming the URI. Other URIs
    (a SQLite file, a local folder) need no server: nothing to check.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import httpx

    try:
        response = httpx.get(tracking_uri.rstrip("/") + "/health", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise TrackingError(
            f"MLflow tracking server not reachable at MLFLOW_TRACKING_URI={tracking_uri} "
            f"({type(exc).__name__}: {exc}). Start it with `mlflow server`, or unset MLFLOW_TRACKING_URI "
            "to track in a local SQLite file"
        ) from exc


class Tracker:
    """A thin, explicit layer over MlflowClient for servegate's runs and registry."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        db_dir = _sqlite_dir(self.tracking_uri)
        if db_dir is not None:
            try:
                db_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingError(
                    f"MLflow tracking store {self.tracking_uri}: cannot create its folder {db_dir}: {exc}"
                ) from exc
        self._artifact_root = (db_dir / "artifacts") if db_dir is not None else None
        try:
            from mlflow import MlflowClient

            if db_dir is None:
                self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            else:
                self.client = self._open_sqlite_stores(MlflowClient, db_dir)
        except Exception as exc:
            raise TrackingError(f"MLflow tracking store {self.tracking_uri} cannot be opened: {exc}") from exc

    def _open_sqlite_stores(self, client_class, db_dir: Path):
        """Open the tracking and registry stores one process at a time.

        Opening a SQLite store creates or migrates its tables; MLflow does not
        guard that against other processes, and deploys started at once on a
        fresh database failed in the migration ("No such constraint:
        'uq_registered_models_name'"). A file lock beside the database makes the
        first opener create the tables and the others find them.
        """
        import filelock

        with filelock.FileLock(str(db_dir / ".mlflow-open.lock"), timeout=300):
            client = client_class(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        return client

    # ---- experiments and runs

    def experiment_id(self, model_name: str) -> str:
        """The experiment for ``model_name``, created on first use."""
        name = EXPERIMENT_PREFIX + model_name
        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            location = None
            if self._artifact_root is not None:
                location = (self._artifact_root / model_name).as_uri()
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except Exception:
                # created by a deploy of the same model started at the same moment: use that one
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                return exp.experiment_id
        except Exception as exc:
            raise TrackingError(f"MLflow experiment {name!r} at {self.tracking_uri}: {exc}") from exc

    def start_run(
        self,
        model_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> str:
        """Open a run for one deploy attempt; returns its run id.

        The run is tagged with its owner (``servegate.owner_pid``, ``servegate.owner_ticks``,
        ``servegate.owner_host``). First, runs of the experiment left ``RUNNING`` by an owner
        that is gone (a SIGKILLed deploy never ends its run) are ended ``KILLED``:
        see :meth:`end_abandoned_runs`.
        """
        exp_id = self.experiment_id(model_name)
        self.end_abandoned_runs(exp_id)
        pid = os.getpid()
        owner = {
            OWNER_PID_TAG: str(pid),
            OWNER_TICKS_TAG: str(_proc.start_ticks(pid)),
            OWNER_HOST_TAG: socket.gethostname(),
        }
        try:
            run = self.client.create_run(
                exp_id, run_name=run_name, tags={"servegate.model": model_name, **owner, **(tags or {})}
            )
        except Exception as exc:
            raise TrackingError(f"MLflow run for {model_name!r} at {self.tracking_uri}: {exc}") from exc
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def end_abandoned_runs(self, experiment_id: str) -> list[str]:
        """End ``KILLED`` every ``RUNNING`` run of the experiment whose owner process is gone.

        Only runs owned on this host are judged (another host's pid means nothing
        here); an owner is gone when its pid runs no more, or runs with another start
        time (a recycled pid). Runs without owner tags are left alone. Returns the
        run ids ended. Never raises: repairing old runs must not stop a new deploy.
        """
        ended: list[str] = []
        try:
            runs = self.client.search_runs(
                [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
            )
        except Exception as exc:
            log.warning("MLflow: could not look for abandoned runs at %s: %s", self.tracking_uri, exc)
            return ended
        host = socket.gethostname()
        for run in runs:
            run_tags = run.data.tags
            pid, ticks = run_tags.get(OWNER_PID_TAG), run_tags.get(OWNER_TICKS_TAG)
            if run_tags.get(OWNER_HOST_TAG) != host or not (pid or "").isdigit():
                continue
            if _proc.is_alive(int(pid), int(ticks) if (ticks or "").isdigit() else None):
                continue
            try:
                self.client.set_tag(run.info.run_id, "servegate.ended_by",
                                    f"a later run: owner pid {pid} on {host} was gone")
                self.client.set_terminated(run.info.run_id, "KILLED")
                ended.append(run.info.run_id)
            except Exception as exc:
                log.warning("MLflow: could not end abandoned run %s: %s", run.info.run_id, exc)
        return ended

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        self._call("log params", self.client.log_batch, run_id, params=items)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._call("set tags", self.client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_figures(self, run_id: str, figures: Mapping[str, float]) -> dict[str, float]:
        """Log every finite numeric figure as a metric; returns what was logged."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        logged: dict[str, float] = {}
        for name, value in figures.items():
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                continue
            logged[metric_key(name)] = float(value)
        metrics = [Metric(k, v, now, 0) for k, v in logged.items()]
        # log_batch takes at most 1000 metrics per call
        for start in range(0, len(metrics), 1000):
            self._call("log metrics", self.client.log_batch, run_id, metrics=metrics[start : start + 1000])
        return logged

    def log_artifact(self, run_id: str, path: Path | str, artifact_path: str | None = None) -> None:
        self._call("log artifact", self.client.log_artifact, run_id, str(path), artifact_path)

    def log_artifacts(self, run_id: str, directory: Path | str, artifact_path: str | None = None) -> None:
        self._call("log artifacts", self.client.log_artifacts, run_id, str(directory), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._call("log text", self.client.log_text, run_id, text, artifact_file)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """End the run as ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self._call("end run", self.client.set_terminated, run_id, status)

    def run_status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def artifact_uri(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.artifact_uri

    # ---- registry

    def _ensure_registered_model(self, model_name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(model_name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    model_name, description=f"servegate model {model_name!r}: one version per staged version"
                )
            except MlflowException:
                # created concurrently by another run: fine
                self.client.get_registered_model(model_name)

    def register_version(
        self, run_id: str, model_name: str, savedmodel_dir: Path | str, serving_version: int
    ) -> RegisteredVersion:
        """Log the SavedModel under the run and register it; ``challenger`` moves to it."""
        self.log_artifacts(run_id, savedmodel_dir, SAVEDMODEL_ARTIFACT_PATH)
        source = f"{self.artifact_uri(run_id)}/{SAVEDMODEL_ARTIFACT_PATH}"
        try:
            self._ensure_registered_model(model_name)
            mv = self.client.create_model_version(
                model_name,
                source,
                run_id=run_id,
                tags={"serving_version": str(serving_version), "verdict": "pending"},
                description=f"store version {serving_version}",
            )
            self.client.set_registered_model_alias(model_name, CHALLENGER, mv.version)
        except Exception as exc:
            raise TrackingError(f"MLflow registry: registering {model_name!r} version {serving_version}: {exc}") from exc
        return RegisteredVersion(model_name, str(mv.version), int(serving_version), source, run_id)

    def find_version(self, model_name: str, serving_version: int):
        """The newest registry version tagged with ``serving_version``, or None."""
        try:
            found = self.client.search_model_versions(
                f"name='{model_name}' and tag.serving_version='{int(serving_version)}'"
            )
        except Exception as exc:
            raise TrackingError(f"MLflow registry search for {model_name!r} v{serving_version}: {exc}") from exc
        if not found:
            return None
        return max(found, key=lambda mv: int(mv.version))

    def record_verdict(
        self, model_name: str, registry_version: str, verdict: str, reasons: Iterable[str] = ()
    ) -> None:
        """Tag the registry version with the verdict and the reasons (one per line)."""
        text = "\n".join(reasons)[:4900]
        for key, value in (("verdict", verdict), ("reasons", text or "-")):
            self._call("tag model version", self.client.set_model_version_tag, model_name, registry_version, key, value)

    def set_champion(self, model_name: str, serving_version: int | None) -> str | None:
        """Point ``champion`` at the registry version of ``serving_version``.

        ``None`` (production serves nothing) removes the alias. Returns the
        registry version now named champion, or None when that store version
        was never registered (then the alias is removed: a wrong champion is
        worse than none).
        """
        from mlflow.exceptions import MlflowException

        mv = None if serving_version is None else self.find_version(model_name, serving_version)
        try:
            if mv is None:
                try:
                    self.client.delete_registered_model_alias(model_name, CHAMPION)
                except MlflowException:
                    pass
                return None
            self.client.set_registered_model_alias(model_name, CHAMPION, mv.version)
        except MlflowException as exc:
            raise TrackingError(f"MLflow registry: alias {CHAMPION} for {model_name!r}: {exc}") from exc
        return str(mv.version)

    def alias_version(self, model_name: str, alias: str):
        """The registry version behind ``alias``, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            return None

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise TrackingError(f"MLflow {what} at {self.tracking_uri}: {exc}") from exc
