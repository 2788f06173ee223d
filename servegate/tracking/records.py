"""What a finished deploy attempt and a rollback leave in MLflow.

A deploy attempt's run (opened by the deploy, named ``<model> deploy`` while it
runs) gets, once the verdict is known: the figures as metrics, the tags
``servegate.verdict`` and ``servegate.version``, its final name and its
description (:mod:`servegate.tracking.conventions`), the reference as its
``evaluation`` dataset, the verdict on its registry version, the report
folder as ``report/``, ``outcome.json``, and its end status: ``FINISHED``
when promoted, ``KILLED`` when cancelled by a signal, else ``FAILED``.

A rollback is a run of its own in the model's experiment, tagged
``servegate.action=rollback`` with the versions, the reason and the run that
caused it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from servegate.errors import TrackingError
from servegate.tracking import conventions

if TYPE_CHECKING:
    from servegate.tracking.tracker import Tracker

log = logging.getLogger("servegate.tracking")

ACTION_TAG = "servegate.action"
CAUSE_TAG = "servegate.caused_by_run"


def _report(report_dir: Path | None) -> dict[str, Any] | None:
    """The validation report's JSON in ``report_dir``, or None when there is none (validation never ran)."""
    path = None if report_dir is None else Path(report_dir) / "report.json"
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("report %s unreadable for MLflow: %s", path, exc)
        return None


def registry_verdict(outcome: Mapping[str, Any], report: Mapping[str, Any] | None) -> str:
    """The registry version's verdict: the validation verdict (``passed``/``failed``) when validation ran,
    ``rolled_back`` when production went back after promoting it, else the attempt's verdict."""
    if outcome.get("verdict") == "rolled_back":
        return "rolled_back"
    if report is not None and report.get("verdict"):
        return str(report["verdict"])
    return str(outcome.get("verdict"))


def record_outcome(tracker: Tracker, run_id: str, outcome: Mapping[str, Any], *, report_dir: Path | None,
                   reference: Path | None, registry_version: str | None) -> str | None:
    """Record a finished attempt on its run and end the run; returns the report's artifact URI (or None)."""
    model, version, verdict = str(outcome["model_name"]), outcome.get("version"), str(outcome["verdict"])
    report = _report(report_dir)
    tracker.log_figures(run_id, outcome.get("figures") or {})
    tracker.set_tags(run_id, {"servegate.verdict": verdict, "servegate.version": version,
                              conventions.DESCRIPTION_TAG: conventions.outcome_description(outcome, registry_version)})
    tracker.set_run_name(run_id, conventions.run_name(model, version, verdict))
    if reference is not None:
        _log_dataset(tracker, run_id, Path(reference), None if report is None else report.get("rows"))
    shadow = Path(report_dir) / "shadow_most_changed.csv" if report_dir is not None else None
    if shadow is not None and shadow.is_file():  # the shadow check's sample of production's requests
        _log_dataset(tracker, run_id, shadow, None, context="shadow")
    if registry_version is not None:
        tracker.record_verdict(model, registry_version, registry_verdict(outcome, report), outcome.get("reasons") or ())
    report_uri = None
    if report is not None:
        tracker.log_artifacts(run_id, report_dir, "report")
        report_uri = f"{tracker.artifact_uri(run_id)}/report"
    tracker.log_text(run_id, json.dumps({**outcome, "report_uri": report_uri}, indent=2), "outcome.json")
    tracker.end_run(run_id, {"promoted": "FINISHED", "cancelled": "KILLED"}.get(verdict, "FAILED"))
    return report_uri


def _log_dataset(tracker: Tracker, run_id: str, reference: Path, rows: int | None,
                 context: str = "evaluation") -> None:
    """The reference as the run's evaluation dataset. A reference gone since validation (moved, deleted)
    costs the dataset record, not the rest of the attempt's record: warn and go on."""
    try:
        tracker.log_evaluation_dataset(run_id, reference, rows=rows, context=context)
    except (OSError, TrackingError) as exc:
        log.warning("MLflow run %s: reference %s not logged as its evaluation dataset: %s", run_id, reference, exc)


def record_rollback(tracker: Tracker, model: str, *, from_version: int | None, to_version: int | None,
                    moved: list[int], reason: str, cause_run_id: str | None = None,
                    flow_run_id: str | None = None, champion: str | None = None) -> str:
    """A finished run recording one rollback of ``model``'s production; returns its run id."""
    tags = {ACTION_TAG: "rollback", "servegate.from_version": _text(from_version),
            "servegate.to_version": _text(to_version), "servegate.reason": conventions.clip(reason),
            conventions.DESCRIPTION_TAG: conventions.rollback_description(
                model, from_version, to_version, moved, reason, cause_run_id, champion)}
    if cause_run_id:
        tags[CAUSE_TAG] = cause_run_id
    if flow_run_id:
        tags["prefect.flow_run_id"] = flow_run_id
    name = conventions.rollback_run_name(model, from_version, to_version, bool(moved))
    run_id = tracker.start_run(model, params={"to_version": _text(to_version)}, tags=tags, run_name=name)
    tracker.log_figures(run_id, {"from_version": from_version or 0, "to_version": to_version or 0,
                                 "versions_moved": len(moved)})
    tracker.end_run(run_id, "FINISHED")
    return run_id


def _text(version: int | None) -> str:
    return "none" if version is None else str(version)
