"""``deploy_model``: the deploy as a Prefect flow, one task per step of :data:`servegate.deploy.steps.STEPS`.

The steps from "stage version" on run inside one Prefect ``transaction``:
when a step fails or judges against the model, Prefect rolls the transaction
back and the steps' ``on_rollback`` hooks undo them in reverse order
(production goes back, the staged version moves to ``rejected/``). "record
outcome" runs on every path, then the run's artifacts are published.

A promoted run ends Completed and returns the outcome
(:class:`servegate.deploy.DeployOutcome`) as a dict. A rejected or
rolled-back run ends Failed with the reasons as its message (see
:func:`servegate.flows.final_state.final_state`); an error is raised.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.transactions import transaction

from servegate.deploy import cancel, recording
from servegate.deploy.plain import cleanup, new_record
from servegate.deploy.progress import add_progress_sink, say
from servegate.deploy.record import AttemptRecord, DeployOutcome, DeployRequest
from servegate.deploy import steps
from servegate.deploy.verdict import judged_record
from servegate.errors import OrchestrationError, ServegateError
from servegate.flows.artifacts import ProgressArtifacts, publish_deploy_artifacts
from servegate.flows.events import emit_deploy_outcome
from servegate.flows.final_state import final_state
from servegate.flows.prefect_internals import outside_transaction
from servegate.flows import journal
from servegate.flows.step_tasks import task_for

add_progress_sink(ProgressArtifacts())  # the bake's progress as a Prefect progress artifact


def _run_name() -> str:
    """``<model>-<timestamp>``: every run of a model gets its own name in the Prefect UI."""
    params = flow_run.parameters or {}
    started = flow_run.scheduled_start_time
    stamp = started.strftime("%Y%m%d-%H%M%S") if started else "now"
    return f"deploy-{params.get('name', 'model')}-{stamp}"


def _call(step: steps.Step, record: AttemptRecord) -> AttemptRecord:
    """Run one step's task; a verdict or an error comes back as the exception the plain runner would see."""
    with nullcontext() if step.undo is not None else outside_transaction():
        state = task_for(step)(record.to_dict(), return_state=True)
    if not state.is_failed():
        return AttemptRecord.from_dict(state.result())
    verdict = journal.take_verdict(record.work_dir)
    if verdict is not None:
        raise verdict  # carrying what the judging step produced (verdict, reasons, report)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    raise OrchestrationError(f"step {step.name!r} ended {state.type.value}: {state.message}")


def run_steps(record: AttemptRecord) -> tuple[AttemptRecord, BaseException | None]:
    """:data:`~servegate.deploy.steps.STEPS` as tasks in one transaction; the flow's twin of
    :func:`servegate.deploy.plain.run_steps` (same return values)."""
    try:
        with transaction():
            for step in steps.STEPS:
                record = _call(step, record)
    except BaseException as exc:
        return journal.apply_undone(judged_record(exc, record)), exc
    return record, None


@task(name="record outcome", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=300)
def record_outcome(record: dict[str, Any], outcome: dict[str, Any], after_error: bool) -> str | None:
    """Figures, verdict, report and outcome into the MLflow run, which ends."""
    return recording.store_outcome(AttemptRecord.from_dict(record), DeployOutcome(**outcome), after_error)


@flow(name="deploy-model", flow_run_name=_run_name, validate_parameters=True)
def deploy_model(
    model_path: str,
    name: str,
    reference: str,
    store: str | None = None,
    serving: str = "process",
    config: str | None = None,
    production_url: str | None = None,
    tracking_uri: str | None = None,
    docker_image: str | None = None,
    production_deadline_s: float = 60.0,
    custom_objects: list[str] | None = None,
    unsafe_deserialization: bool = False,
    work_dir: str | None = None,
    bake_s: float | None = None,
    traffic: str | None = None,
    canary_deadline_s: float | None = None,
) -> Any:
    """Export, stage, canary, validate, promote or reject, verify production.

    The parameters are :class:`DeployRequest`'s fields under the names of
    :meth:`DeployRequest.to_parameters` (tests/flows/test_request_parameters.py keeps them equal)."""
    request = DeployRequest.from_parameters(locals())
    record = new_record(request, str(flow_run.get_id() or "") or None)
    # SIGTERM/SIGINT during the steps: cancelled, undone, recorded (Prefect's own SIGTERM handler would
    # crash the run mid-step); once the steps are over, a signal is only noted and the outcome recorded.
    with cancel.handlers() as window:
        try:
            record, error = run_steps(record)
            window.raising = False
            return _finish(record, error)
        finally:
            cleanup(record, remove_work_dir=request.work_dir is None)


def _finish(record: AttemptRecord, error: BaseException | None) -> Any:
    """Record the outcome in MLflow, publish the artifacts, emit the event; the flow run's final state."""
    outcome = recording.outcome_of(record, error)
    outcome.report_uri = record_outcome(record.to_dict(), outcome.to_dict(), error is not None)
    publish_deploy_artifacts(record, outcome)
    version = f"version {outcome.version} " if outcome.version is not None else ""
    say(f"deploy of {record.name}: {version}{outcome.verdict.replace('_', ' ')}")
    emit_deploy_outcome(outcome, (record.bake or {}).get("alarm"))  # servegate.model.<verdict>
    return final_state(outcome, error)


def run_deploy_flow(request: DeployRequest) -> dict:
    """Run ``deploy_model`` for ``request`` (a DeployRequest) in this process and return the outcome as a dict.

    A rejected or rolled-back deploy ends the flow run Failed with an exception
    that carries the outcome (``.outcome``); an error re-raises the original
    exception (a :class:`ServegateError` keeps its message and exit code).
    """
    state = deploy_model(**request.to_parameters(), return_state=True)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException) and isinstance(getattr(data, "outcome", None), dict):
        return data.outcome  # rejected, or rolled back after production verification failed
    if isinstance(data, BaseException):
        if isinstance(data, ServegateError):
            raise data
        raise OrchestrationError(f"deploy flow run failed: {type(data).__name__}: {data}") from data
    if not isinstance(data, dict):
        raise OrchestrationError(f"deploy flow run ended {state.type.value} without an outcome: {state.message}")
    return data
