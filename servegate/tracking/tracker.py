"""MLflow tracking for deploy attempts, and the registry that mirrors the store.

Life cycle, as the deploy drives it:

1. ``Tracker(uri)`` — one client on one tracking store (default: the SQLite
   file from :func:`servegate.settings.default_tracking_uri`; the environment
   variable ``MLFLOW_TRACKING_URI`` overrides it). The registry uses the same URI.
2. ``start_run(model, params)`` — one run per deploy attempt, in the
   experiment ``servegate/<model>`` (created on first use, opening in MLflow's
   model-training view; with a SQLite store its artifacts live in
   ``artifacts/`` beside the database file).
3. ``log_figures`` / ``log_artifact`` / ``log_artifacts`` / ``log_text`` while
   the run is open.
4. ``register_version`` — a registry version for the staged store version
   (the bytes stay in the store: :mod:`servegate.tracking.registry`);
   ``challenger`` moves to it.
5. ``record_outcome`` — figures, verdict, name, description, evaluation
   dataset, report and ``outcome.json``, then the run ends ``FINISHED`` (promoted)
   or ``FAILED`` (:mod:`servegate.tracking.records`).
6. Changes to production go through :mod:`servegate.release`, which moves
   ``champion`` (``set_champion``), tags versions (``record_verdict``) and
   records rollbacks (``record_rollback``).

A run whose deploy was killed before it could end it is ended ``KILLED`` by the
next ``start_run`` in its experiment (:mod:`servegate.tracking.owner`).

The class holds no global MLflow state (no ``mlflow.start_run``): it uses an
explicit :class:`mlflow.MlflowClient`, so two deploys in one process, or a
Prefect task thread, cannot pick up each other's active run. Each method is
one verb delegating to the module that knows the convention.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from servegate.errors import TrackingError
from servegate.settings import default_tracking_uri
from servegate.tracking import conventions, owner, records, registry
from servegate.tracking.registry import RegisteredVersion
from servegate.tracking.stores import call, metric_key, open_client, sqlite_dir

EXPERIMENT_PREFIX = "servegate/"


class Tracker:
    """A thin, explicit layer over MlflowClient for servegate's runs and registry."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        db_dir = sqlite_dir(self.tracking_uri)
        self._artifact_root = (db_dir / "artifacts") if db_dir is not None else None
        self.client = open_client(self.tracking_uri)

    def _call(self, what: str, fn, *args, **kwargs):
        return call(self.tracking_uri, what, fn, *args, **kwargs)

    # ---- experiments and runs

    def experiment_id(self, model_name: str) -> str:
        """The experiment for ``model_name``, created on first use, marked for the model-training view."""
        name = EXPERIMENT_PREFIX + model_name
        kind = {conventions.EXPERIMENT_KIND_TAG: conventions.MODEL_TRAINING_KIND}
        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                location = None if self._artifact_root is None else (self._artifact_root / model_name).as_uri()
                try:
                    return self.client.create_experiment(name, artifact_location=location, tags=kind)
                except Exception:
                    # created by a deploy of the same model started at the same moment: use that one
                    exp = self.client.get_experiment_by_name(name)
                    if exp is None:
                        raise
            if conventions.EXPERIMENT_KIND_TAG not in exp.tags:  # created before servegate set the kind
                self.client.set_experiment_tag(exp.experiment_id, *next(iter(kind.items())))
            return exp.experiment_id
        except Exception as exc:
            raise TrackingError(f"MLflow experiment {name!r} at {self.tracking_uri}: {exc}") from exc

    def start_run(self, model_name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, str] | None = None, run_name: str | None = None) -> str:
        """Open a run; returns its run id. Runs of the experiment left ``RUNNING`` by an owner
        that is gone are ended ``KILLED`` first (:func:`servegate.tracking.owner.end_abandoned_runs`)."""
        exp_id = self.experiment_id(model_name)
        self.end_abandoned_runs(exp_id)
        all_tags = {"servegate.model": model_name, **conventions.source_tags(), **owner.owner_tags(), **(tags or {})}
        run = self._call(f"run for {model_name!r}", self.client.create_run, exp_id,
                         run_name=run_name or conventions.run_name(model_name, None, "deploy"), tags=all_tags)
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def ui_url(self, model_name: str, base_url: str = "http://127.0.0.1:5000", run_id: str | None = None) -> str:
        """A link to the model's experiment (or one run) in the MLflow UI's model-training view."""
        return conventions.ui_url(base_url, self.experiment_id(model_name), run_id)

    def end_abandoned_runs(self, experiment_id: str) -> list[str]:
        return owner.end_abandoned_runs(self.client, self.tracking_uri, experiment_id)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        self._call("log params", self.client.log_batch, run_id, params=items)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._call("set tags", self.client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def set_run_name(self, run_id: str, name: str) -> None:
        self._call("rename run", self.client.update_run, run_id, name=name)

    def log_figures(self, run_id: str, figures: Mapping[str, float]) -> dict[str, float]:
        """Log every finite numeric figure as a metric; returns what was logged."""
        from mlflow.entities import Metric

        logged: dict[str, float] = {}
        for name, value in figures.items():
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                logged[metric_key(name)] = float(value)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in logged.items()]
        for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics per call
            self._call("log metrics", self.client.log_batch, run_id, metrics=metrics[start : start + 1000])
        return logged

    def log_evaluation_dataset(self, run_id: str, reference: Path | str, rows: int | None = None,
                               context: str = "evaluation") -> None:
        """The reference file as the run's ``evaluation`` dataset (described, not copied); ``context`` names
        another role (``shadow``: the most-changed recorded requests)."""
        from servegate.tracking.datasets import evaluation_input

        self._call("log dataset", self.client.log_inputs, run_id,
                   datasets=[evaluation_input(Path(reference), rows, context)])

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
        return self._call("get run", self.client.get_run, run_id).info.status

    def artifact_uri(self, run_id: str) -> str:
        return self._call("get run", self.client.get_run, run_id).info.artifact_uri

    # ---- what a finished attempt or a rollback leaves (servegate.tracking.records)

    def record_outcome(self, run_id: str, outcome: Mapping[str, Any], *, report_dir: Path | None = None,
                       reference: Path | None = None, registry_version: str | None = None) -> str | None:
        """Record a finished deploy attempt (``DeployOutcome.to_dict()``) and end its run; returns the report URI."""
        return records.record_outcome(self, run_id, outcome, report_dir=report_dir, reference=reference,
                                      registry_version=registry_version)

    def record_rollback(self, model_name: str, **details: Any) -> str:
        """A finished run recording one rollback; returns its run id (see :func:`records.record_rollback`)."""
        return records.record_rollback(self, model_name, **details)

    # ---- registry (servegate.tracking.registry)

    def register_version(self, run_id: str, model_name: str, savedmodel_dir: Path | str,
                         serving_version: int) -> RegisteredVersion:
        """A registry version for the staged store version; ``challenger`` moves to it. No bytes are copied."""
        return registry.register(self.client, self.tracking_uri, run_id, model_name, savedmodel_dir, serving_version)

    def find_version(self, model_name: str, serving_version: int):
        """The newest registry version tagged with ``serving_version``, or None."""
        return registry.find_version(self.client, self.tracking_uri, model_name, serving_version)

    def record_verdict(self, model_name: str, registry_version: str, verdict: str, reasons: Iterable[str] = ()) -> None:
        """Tag the registry version with the verdict and the reasons (one per line)."""
        self.tag_version(model_name, registry_version, registry.verdict_tags(verdict, reasons))

    def tag_version(self, model_name: str, registry_version: str, tags: Mapping[str, str]) -> None:
        registry.set_version_tags(self.client, self.tracking_uri, model_name, registry_version, tags)

    def set_champion(self, model_name: str, serving_version: int | None) -> str | None:
        """Point ``champion`` at the registry version of ``serving_version`` (None: remove it)."""
        return registry.set_champion(self.client, self.tracking_uri, model_name, serving_version)

    def alias_version(self, model_name: str, alias: str):
        """The registry version behind ``alias``, or None."""
        return registry.alias_version(self.client, model_name, alias)
