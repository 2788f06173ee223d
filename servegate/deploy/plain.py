"""The deploy as plain Python: :data:`~servegate.deploy.steps.STEPS` in order, no Prefect.

:func:`run_deploy` is what tests, benchmarks and the reliability harness call;
the Prefect flow (:mod:`servegate.flows.deploy`) runs the same list with the
same undo order. Bad input raises before anything changes. Once the MLflow
run is open, every outcome (promoted, rejected, rolled back) is returned, the
store is left consistent and the canary is stopped; an error is recorded,
undone and raised.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

from servegate.deploy import canary, recording, startup
from servegate.deploy.verdict import Verdict, failure_reason, judged_record
from servegate.deploy.record import AttemptRecord, DeployOutcome, DeployRequest
from servegate.deploy import steps as declared
from servegate.deploy.steps import Step, call_step, undo_steps


def new_record(request: DeployRequest, flow_run_id: str | None = None, inputs_checked: bool = False) -> AttemptRecord:
    """The first record of an attempt: its request and its work dir (made here unless the request names one).
    A work dir where the preflight passed (:func:`preflight` leaves its timings there) has its inputs checked."""
    from servegate.runtime.workdirs import new_work_dir

    work_dir = request.work_dir or str(new_work_dir())
    inputs_checked = inputs_checked or (request.work_dir is not None
                                        and (Path(work_dir) / recording.PREFLIGHT_TIMINGS).is_file())
    return AttemptRecord(request=request, work_dir=work_dir, flow_run_id=flow_run_id, inputs_checked=inputs_checked)


def run_steps(record: AttemptRecord, steps: Iterable[Step] | None = None) -> tuple[AttemptRecord, BaseException | None]:
    """Run ``steps`` (default: every declared step); on an exception undo the done ones in reverse order. Returns the last record and
    the exception that stopped the attempt (None when every step passed)."""
    done: list[Step] = []
    try:
        for step in declared.STEPS if steps is None else steps:
            record = call_step(step, record)
            done.append(step)
    except BaseException as exc:
        record = judged_record(exc, record)  # a verdict carries the judging step's record
        return undo_steps(done, record, failure_reason(exc)), exc
    return record, None


def preflight(request: DeployRequest, inputs_checked: bool = False) -> AttemptRecord:
    """The steps that change nothing outside the work dir; raises the first bad input's error.
    ``inputs_checked``: the caller ran :func:`~servegate.deploy.inputs.check_request` on ``request``."""
    steps = [s for s in declared.STEPS if s.preflight]
    record, error = run_steps(new_record(request, inputs_checked=inputs_checked), steps)
    if error is not None:
        cleanup(record, remove_work_dir=request.work_dir is None)
        raise error
    # The flow that runs with this work dir counts these seconds in its figures (recording.attempt_timings).
    (record.work_path / recording.PREFLIGHT_TIMINGS).write_text(json.dumps(record.timings))
    return record


def cleanup(record: AttemptRecord, remove_work_dir: bool) -> None:
    """Wait for background work of the attempt (imports, canary shutdown); end an unused spare server."""
    startup.after_attempt(record)
    canary.wait_for_stopped()
    if remove_work_dir:
        shutil.rmtree(record.work_dir, ignore_errors=True)


def run_deploy(request: DeployRequest, flow_run_id: str | None = None) -> DeployOutcome:
    """Every step in order, without Prefect; see the module docstring."""
    record = new_record(request, flow_run_id)
    try:
        record, error = run_steps(record)
        outcome = recording.record_outcome(record, error)
        if error is not None and outcome.verdict == Verdict.ERROR:
            raise error
        return outcome
    finally:
        cleanup(record, remove_work_dir=request.work_dir is None)
