"""Steps "open MLflow run" and "record outcome": the attempt's MLflow run, from open to end.

The run opens only after every check that needs no server passed, so bad
input leaves no run behind. "record outcome" runs on every path once the run
is open: figures, verdict, report and outcome go to MLflow and the run ends
(``FINISHED`` when promoted, else ``FAILED``).
"""

from __future__ import annotations

import json
import logging

from servegate.deploy import cancel, resources
from servegate.deploy.clock import process_age_s
from servegate.deploy.verdict import ModelRejected, Verdict, failure_reason
from servegate.deploy.record import AttemptRecord, DeployOutcome
from servegate.errors import ServegateError

log = logging.getLogger("servegate.deploy")

#: the CLI's preflight leaves its steps' seconds in the work dir under this name
PREFLIGHT_TIMINGS = "preflight-timings.json"


def open_mlflow_run(record: AttemptRecord) -> AttemptRecord:
    """One MLflow run per attempt."""
    tags = {"servegate.serving": record.request.serving}
    if record.flow_run_id:
        tags["prefect.flow_run_id"] = record.flow_run_id
    run_id = resources.tracker(record.request.tracking_uri).start_run(
        record.name, params=record.request.params(), tags=tags, run_name=f"{record.name} deploy")
    return record.but(run_id=run_id)


def attempt_timings(record: AttemptRecord) -> dict[str, float]:
    """Each step's seconds in the whole attempt: the checks the CLI ran before the flow (its
    :data:`PREFLIGHT_TIMINGS` file in the work dir) and the flow's steps together. The flow's
    "export model" reuses the checked export, so the export's seconds are the preflight's."""
    path = record.work_path / PREFLIGHT_TIMINGS
    try:
        before = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        before = {}
    return {step: round(before.get(step, 0.0) + record.timings.get(step, 0.0), 3)
            for step in {**before, **record.timings}}


def outcome_of(record: AttemptRecord, error: BaseException | None) -> DeployOutcome:
    """The attempt's outcome from its record and the exception that stopped it (None: promoted)."""
    if isinstance(error, ModelRejected) and cancel.received() is None:
        reasons = list(error.reasons)
    else:
        reasons = [failure_reason(error)] if error is not None else []
    timings = attempt_timings(record)
    figures = dict(record.figures)
    figures.update({f"time.{step}_s": seconds for step, seconds in timings.items()})
    outcome = DeployOutcome(
        model_name=record.name, verdict=Verdict.of(error, record.rolled_back).value, version=record.version, reasons=reasons,
        figures=figures, previous_production_version=record.previous_production, mlflow_run_id=record.run_id,
        mlflow_tracking_uri=record.request.tracking_uri, registry_version=record.registry_version,
        prefect_flow_run_id=record.flow_run_id, timings=timings,
        wall_s=process_age_s(), startup_s=record.started_s,
        task=record.task, outputs=list(record.outputs), gates_not_run=list(record.gates_not_run),
        bake=bake_summary(record.bake),
    )
    try:
        outcome.production_version = resources.store(record).status(record.name).serving_version
    except ServegateError:
        pass
    return outcome


def bake_summary(bake: dict | None) -> dict | None:
    """The bake as the outcome shows it (None: no bake ran)."""
    if not bake:
        return None
    return {"verdict": bake.get("verdict"), "not_judged": bake.get("not_judged"),
            "before_not_judged": bake.get("before_not_judged"), "alarm": (bake.get("alarm") or {}).get("name")}


def store_outcome(record: AttemptRecord, outcome: DeployOutcome, after_error: bool) -> str | None:
    """Figures, verdict, report, dataset and outcome into the attempt's MLflow run, which ends;
    returns the report's artifact URI. After an error, tracking trouble is only logged: the
    earlier error matters more."""
    from servegate.deploy import side_work

    try:
        side_work.join(record.report_dir)  # the report uploaded is complete
    except side_work.ReportError:
        if not after_error:
            raise
        log.exception("the validation report of the failed attempt is incomplete")
    if record.run_id is None:
        return None
    from pathlib import Path

    try:
        return resources.tracker(record.request.tracking_uri).record_outcome(
            record.run_id, outcome.to_dict(), report_dir=Path(record.report_dir) if record.report_dir else None,
            reference=Path(record.request.reference), registry_version=record.registry_version)
    except ServegateError:
        if not after_error:
            raise
        log.exception("could not record the failed attempt in MLflow")
        return None


def record_outcome(record: AttemptRecord, error: BaseException | None) -> DeployOutcome:
    """The outcome of the attempt, recorded in MLflow."""
    outcome = outcome_of(record, error)
    outcome.report_uri = store_outcome(record, outcome, after_error=error is not None)
    return outcome
