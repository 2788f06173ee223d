"""Prefect tasks: one per step of :data:`servegate.deploy.steps.STEPS`, made from the step itself.

A task takes the attempt record as a plain dict and returns the next one, so
the Prefect UI shows real inputs and a task runner could run a step in
another process. What a task adds is only what Prefect is for:

- ``cache_policy=NO_CACHE``: a deploy step must run every time it is asked;
- the step's timeout;
- a verdict (validation rejected the model, production verification failed)
  ends the task **Failed** (named ``Rejected``, ``BakeAlarm``,
  ``VerificationFailed``) with the reasons as its message and no traceback:
  the step that judged is the one the timeline shows failed. Prefect logs
  such a task's end at ERROR with ``exc_info=True`` although no exception is
  being handled, which would print ``NoneType: None`` under the line;
  :class:`NoEmptyTraceback` drops that empty traceback (never a real one);
- an ``on_rollback`` hook for every step with an undo. The flow runs the
  steps inside a Prefect ``transaction``; when a step fails, Prefect runs the
  hooks in reverse order. A hook rebuilds everything from plain values: the
  record its task returned (a transaction value) and the failure noted in the
  work dir (:mod:`servegate.flows.journal`), where it also leaves what
  its undo changed, for the flow to read back.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from prefect.transactions import Transaction, get_transaction

from servegate.deploy import cancel
from servegate.deploy.verdict import VERDICTS, failure_reason
from servegate.deploy.record import AttemptRecord
from servegate.deploy.steps import Step, call_step
from servegate.flows import journal


class NoEmptyTraceback(logging.Filter):
    """Clears ``exc_info`` that holds no exception (``(None, None, None)``: a log call with
    ``exc_info=True`` outside an ``except`` block); a record with a real exception is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


def _quiet_empty_tracebacks(logger_name: str = "prefect.task_runs") -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, NoEmptyTraceback) for f in logger.filters):
        logger.addFilter(NoEmptyTraceback())


_quiet_empty_tracebacks()


def _body(step: Step):
    def run(record: dict[str, Any]) -> Any:
        current = AttemptRecord.from_dict(record)
        try:
            result = call_step(step, current)
        except VERDICTS as exc:
            journal.note_failure(current.work_dir, exc)
            return Failed(name=journal.note_verdict(exc, current), message=failure_reason(exc))
        except BaseException as exc:
            journal.note_failure(current.work_dir, exc)
            raise
        if step.undo is not None:
            get_transaction().set("record", result.to_dict())
        return result.to_dict()

    run.__name__ = step.key
    run.__doc__ = step.run.__doc__
    return run


def _undo_hook(step: Step):
    def undo(txn: Transaction) -> None:
        record = AttemptRecord.from_dict(txn.get("record"))
        with cancel.handlers(raising=False):  # a signal meanwhile is only noted: an undo is never cut short
            undone = step.undo(record, journal.failure(record.work_dir))
        journal.note_undo(record, undone)

    undo.__name__ = f"undo_{step.key}"
    return undo


def _make_task(step: Step) -> Task:
    made = task(name=step.name, cache_policy=NO_CACHE, persist_result=False,
                timeout_seconds=step.timeout_s)(_body(step))
    if step.undo is not None:
        made.on_rollback(_undo_hook(step))
    return made


_TASKS: dict[Step, Task] = {}


def task_for(step: Step) -> Task:
    """The Prefect task of ``step`` (made once per step)."""
    if step not in _TASKS:
        _TASKS[step] = _make_task(step)
    return _TASKS[step]
