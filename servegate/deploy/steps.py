"""The deploy, declared once: its steps in order, how each is undone, which errors a retry fixes.

::

    check inputs ─► check bake settings ─► export model ─► check reference data ─► compute golden predictions
        ─► open MLflow run ─► stage version ─► register in MLflow ─► validate on canary
        ─┬─► snapshot production ─► promote version ─► verify production ─► bake production
         │       ─┬─► (record outcome) promoted
         │        └─► (undo) production rolled back ─► (record outcome) rolled_back
         └─► (undo) reject staged version ─► (record outcome) rejected

Every step is a function ``AttemptRecord -> AttemptRecord``. When one raises,
the steps already done are undone in reverse order (each undo takes the
record and the reason); "record outcome" then runs on every path. Both the
plain runner (:mod:`servegate.deploy.plain`) and the Prefect flow
(:mod:`servegate.flows.deploy`) run this list through :func:`call_step` and
:func:`undo_steps`, so their order, retries, judging and undo cannot drift
apart. One difference is deliberate: ``timeout_s`` is enforced by Prefect in
the flow only. The plain runner is what tests, benchmarks and the reliability
harness call, often outside the main thread, where no signal can interrupt a
step; and the steps that wait on something outside carry their own deadline
(the canary's load deadline, ``production_deadline_s``, the bake's duration),
which both runners keep.

``retry_on`` is an allow-list: a step is run again (up to ``attempts`` times)
only for those errors; anything else fails the step at once. ``preflight``
steps change nothing outside the work dir: the CLI runs them before it starts
any run, so bad input is refused before Prefect or MLflow see it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from servegate.deploy import bake, canary, cancel, exporting, inputs, production, recording, staging, startup
from servegate.deploy.clock import process_age_s
from servegate.deploy.progress import say
from servegate.deploy.record import AttemptRecord

StepFn = Callable[[AttemptRecord], AttemptRecord]
UndoFn = Callable[[AttemptRecord, str], AttemptRecord]


def _retryable_boot_errors() -> tuple[type[BaseException], ...]:
    from servegate.serving.runners import DeadlineExceededError, PortInUseError

    # A port taken between picking and binding it, a first start slower than the deadline.
    # Never ModelLoadError (the model itself failed) or a bad spec: a retry cannot fix those.
    return (PortInUseError, DeadlineExceededError)


@dataclass(frozen=True)
class Step:
    """One step of the deploy: what it does, how it is undone, which errors a retry can fix."""

    name: str
    run: StepFn
    undo: UndoFn | None = None
    retry_on: Callable[[], tuple[type[BaseException], ...]] = tuple
    attempts: int = 1
    timeout_s: float | None = None  # enforced by Prefect in the flow only (see the module docstring)
    preflight: bool = False  # changes nothing outside the work dir
    judge: Callable[[AttemptRecord], None] | None = None  # raises the verdict the step's record holds

    @property
    def key(self) -> str:
        return self.name.replace(" ", "_")


STEPS: tuple[Step, ...] = (
    Step("check inputs", inputs.check_inputs, preflight=True, timeout_s=120),
    Step("check bake settings", bake.check_bake, preflight=True, timeout_s=60),
    Step("export model", exporting.export_model, preflight=True, timeout_s=900),
    Step("check reference data", exporting.check_reference, preflight=True, timeout_s=600),
    Step("compute golden predictions", exporting.compute_golden, preflight=True, timeout_s=900),
    Step("open MLflow run", recording.open_mlflow_run, timeout_s=120),
    Step("stage version", staging.stage_version, undo=staging.reject_staged, timeout_s=600),
    Step("register in MLflow", staging.register_version, timeout_s=300),
    Step("validate on canary", canary.validate_on_canary, retry_on=_retryable_boot_errors, attempts=3,
         timeout_s=1800, judge=canary.judge_validation),
    Step("snapshot production", bake.snapshot_production, timeout_s=3900),  # the window before promotion
    Step("promote version", production.promote_version, undo=production.roll_production_back, timeout_s=600),
    Step("verify production", production.verify_production, timeout_s=600),
    Step("bake production", bake.bake_production, judge=bake.judge_bake),  # bounded by its own duration
)


def call_step(step_: Step, record: AttemptRecord) -> AttemptRecord:
    """Run one step with its retry policy; time it; a failed validation verdict raises :class:`ModelRejected`."""
    retryable = step_.retry_on()
    cancel.check()  # no step starts after a SIGTERM or SIGINT
    if record.started_s is None:
        record = record.but(started_s=process_age_s())
    startup.before_step(step_.name, record)
    started = time.perf_counter()
    for attempt in range(1, step_.attempts + 1):
        try:
            result = step_.run(record)
            break
        except retryable as exc:
            if attempt == step_.attempts:
                raise
            say(f"{step_.name}: attempt {attempt} of {step_.attempts} failed ({exc}); retrying")
            time.sleep(1)
    result = result.but(timings={**result.timings, step_.key: round(time.perf_counter() - started, 3)})
    cancel.check()  # a signal that the step's own code swallowed still stops the attempt
    if step_.judge is not None:
        step_.judge(result)
    return result



def undo_steps(done: list[Step], record: AttemptRecord, reason: str) -> AttemptRecord:
    """Undo ``done`` in reverse order (production is rolled back before the staged version is rejected).
    A signal meanwhile is only noted: an undo is never cut short."""
    with cancel.handlers(raising=False):
        for step_ in reversed(done):
            if step_.undo is not None:
                record = step_.undo(record, reason)
    return record
