"""Step "validate on canary": boot a canary server, validate the candidate on it, stop it.

The canary lives inside this one step (a server is not a value a record can
carry): it serves the staged candidate under the label ``canary`` and, when
production serves a version, that version under ``stable`` — the baseline the
checks compare against, on the same rows in the same server. A failed
verdict is recorded in the returned record; :func:`judge_validation` (the
step's judge) raises it as :class:`~servegate.deploy.verdict.ModelRejected`.
After a passed verdict the report's plots and files are drawn beside the next
steps (:mod:`servegate.deploy.side_work`).

The canary's graceful shutdown (about a second) overlaps the next steps;
:func:`wait_for_stopped` (called when the attempt ends) waits for it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from servegate.deploy import resources, side_work
from servegate.deploy.progress import say
from servegate.deploy.record import AttemptRecord

log = logging.getLogger("servegate.deploy")

#: Where the canary's server log goes in the attempt's MLflow run when something failed.
CANARY_LOG_ARTIFACT = "canary/canary.log"
#: Lines of it kept: a whole start-up (a failed load's traceback included) with room to spare.
LOG_LINES_KEPT = 5000

_stopping: list[threading.Thread] = []


def canary_spec(record: AttemptRecord):
    from servegate.serving.runners import CanarySpec

    store = resources.store(record)
    versions = {record.version: store.version_path("staging", record.name, record.version)}
    labels = {"canary": record.version}
    if record.previous_production is not None:
        versions[record.previous_production] = store.version_path("production", record.name, record.previous_production)
        labels["stable"] = record.previous_production
    return CanarySpec(record.name, versions=versions, labels=labels, run_id=record.run_id)


def boot_canary(record: AttemptRecord, deadline_s: float):
    """Start the canary and wait until it is AVAILABLE; a failed boot leaves nothing running."""
    from servegate.serving.runners import ModelLoadError, make_runner

    options: dict[str, Any] = {}
    if record.request.serving == "docker" and record.request.docker_image:
        options["image"] = record.request.docker_image
    runner = make_runner(record.request.serving, canary_spec(record), **options)
    say(f"canary: starting ({record.request.serving}), deadline {deadline_s:.0f} s")
    try:
        runner.start()
        runner.wait_until_available(deadline_s)
    except BaseException as exc:
        server_log = keep_logs(record, runner)
        if isinstance(exc, ModelLoadError):
            exc.server_log = server_log  # read before stop(), which removes the runner's files
        runner.stop()
        raise
    say(f"canary: AVAILABLE at {runner.rest_url}")
    return runner


def keep_logs(record: AttemptRecord, runner) -> str:
    """Keep the canary's log with the MLflow run (called when something failed); returns it."""
    server_log = ""
    try:
        server_log = runner.logs(tail=LOG_LINES_KEPT)
        resources.tracker(record.request.tracking_uri).log_text(record.run_id, server_log, CANARY_LOG_ARTIFACT)
    except Exception as exc:  # the logs are a courtesy; never mask the real failure
        log.warning("could not keep the canary's logs: %s", exc)
    return server_log


def load_rejection(record: AttemptRecord, exc) -> AttemptRecord | None:
    """The candidate's verdict when the canary's server could not load *it* (a model TensorFlow Serving
    cannot load cannot serve: a rejection, with the server's one-line cause); None when the log does
    not blame the candidate (production's version, or no load line: an error, not a verdict).
    ``exc``: the boot's :class:`~servegate.serving.runners.ModelLoadError`."""
    from servegate.serving.runners.errors import load_failure

    failure = load_failure(exc.server_log or str(exc), record.name)
    if failure is None or failure.version != record.version:
        return None
    reason = (f"load: the canary's model server could not load version {record.version}: {failure.cause} "
              f"(server log: MLflow artifact {CANARY_LOG_ARTIFACT})")
    say(f"validate: verdict failed (version {record.version} does not load)")
    return record.but(validation_verdict="failed", reasons=[reason], figures={})


def _row_progress():
    """A validate() progress callback that reports each quarter of the reference rows once."""
    reported: set[tuple[str | int, int]] = set()

    def report(who: str | int, done: int, total: int) -> None:
        quarter = 4 * done // max(total, 1)
        if quarter and (who, quarter) not in reported:
            reported.add((who, quarter))
            say(f"validate: {who}: {done}/{total} reference rows answered")

    return report


def run_validation(record: AttemptRecord, runner, load_seconds: float):
    """The checks against the running canary; returns the :class:`ValidationReport`."""
    from servegate import export
    from servegate.validation import validate

    cfg = resources.config(record)
    production_signature = None
    if record.previous_production is not None:
        store = resources.store(record)
        production_signature = export.read_signature(
            store.version_path("production", record.name, record.previous_production))
    say(f"validate: {record.reference_rows} reference rows against the canary")
    return validate(
        runner, resources.reference(record, cfg), cfg, candidate="canary",
        baseline="stable" if record.previous_production is not None else None,
        golden=resources.golden(record), production_signature=production_signature,
        out_dir=record.work_path / "report", load_seconds=load_seconds, model_name=record.name,
        progress=_row_progress(), beside=functools.partial(side_work.start, str(record.work_path / "report")),
    )


def validate_on_canary(record: AttemptRecord) -> AttemptRecord:
    """Boot, validate, stop; the verdict, reasons, figures and report dir go into the record."""
    from servegate.serving.runners import ModelLoadError

    deadline = record.request.canary_deadline_s
    if deadline is None:
        deadline = resources.config(record).load.deadline_s
    started = time.perf_counter()
    try:
        runner = boot_canary(record, deadline)
    except ModelLoadError as exc:
        rejected = load_rejection(record, exc)
        if rejected is None:
            raise
        return rejected
    report = None
    try:
        report = run_validation(record, runner, round(time.perf_counter() - started, 3))
    finally:
        if report is None:
            keep_logs(record, runner)
        stop_in_background(runner)
    reasons = [f"{c.name}: {c.message}" for c in report.checks if c.status == "failed"]
    say(f"validate: verdict {report.verdict}")
    return record.but(validation_verdict=report.verdict, reasons=reasons, figures=dict(report.figures()),
                      report_dir=str(record.work_path / "report"), task=report.task,
                      outputs=[dict(o) for o in report.outputs], gates_not_run=report.gates_not_run)


def stop_in_background(runner) -> None:
    thread = threading.Thread(target=runner.stop, name=f"stop-canary-{runner.spec.model_name}")
    thread.start()
    _stopping.append(thread)


def wait_for_stopped() -> None:
    """Wait until every canary this process started has stopped."""
    while _stopping:
        _stopping.pop().join()


def judge_validation(record: AttemptRecord) -> None:
    """Raise :class:`ModelRejected` carrying ``record`` when validation failed the candidate."""
    from servegate.deploy.verdict import ModelRejected

    if record.validation_verdict != "passed":
        message = f"model {record.name!r} version {record.version} rejected: " + "; ".join(record.reasons)
        raise ModelRejected(message, record.reasons, record=record)
