"""Progress lines of an attempt: to the Prefect run's log inside a flow run, else to a Python logger.

Steps call :func:`say`; the CLI shows the ``servegate.deploy`` logger on
stderr, a Prefect flow run shows them in its log (the Prefect UI). Prefect is
only asked when it is already imported: the plain runner never imports it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

log = logging.getLogger("servegate.deploy")


def in_prefect_run() -> bool:
    """Whether this code runs inside a Prefect flow or task run (never imports Prefect to find out)."""
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _run_logger():
    if not in_prefect_run():
        return None
    from prefect.logging import get_run_logger

    return get_run_logger()


def say(message: str) -> None:
    """One progress line (a step's news), for the terminal and the flow run's log."""
    log.info(message)
    run_logger = _run_logger()
    if run_logger is not None:
        run_logger.info(message)


#: Where a long step's progress goes besides the log, as ``sink(model name, what, fraction 0..1, description)``:
#: a runner adds its sinks (the Prefect flow: a progress artifact), so that a step needs no runner's API.
_progress_sinks: list[Callable[[str, str, float, str], None]] = []


def add_progress_sink(sink: Callable[[str, str, float, str], None]) -> None:
    if sink not in _progress_sinks:
        _progress_sinks.append(sink)


def report_progress(name: str, what: str, fraction: float, description: str) -> None:
    """A long step's progress (the bake's): to every sink a runner added; nothing when none was."""
    for sink in _progress_sinks:
        sink(name, what, fraction, description)
