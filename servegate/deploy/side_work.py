"""Work a deploy runs beside its critical path, joined where its result is first needed.

Once validation's verdict is known, the validation report's plots and files
(report.json, report.md, report.html) are needed only by the record of the
outcome; a passed verdict's promotion does not wait for them. So they are
drawn in a thread while the production snapshot and the promotion run, and
joined before "verify production" (:mod:`servegate.deploy.startup`): a failure
there fails that step, so the deploy fails and the promotion is rolled back,
as when the plots failed inside "validate on canary". The outcome's record
joins again (the report it uploads is complete), and the attempt's end joins
whatever is left, so nothing runs into the work dir's removal or interpreter
exit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from servegate.errors import ServegateError

log = logging.getLogger(__name__)


class ReportError(ServegateError):
    """The validation report, drawn beside the promotion, could not be completed."""


_pending: dict[str, Future] = {}
_guard = threading.Lock()


def start(key: str, work: Callable[[], None]) -> None:
    """Run ``work`` in a thread of its own, to be joined by ``key`` (one piece of work per key)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside-promotion")
    with _guard:
        if key in _pending:
            raise RuntimeError(f"side work for {key!r} already started")
        _pending[key] = executor.submit(work)
    executor.shutdown(wait=False)


def join(key: str | None) -> None:
    """Wait for the work started under ``key`` (no-op when none is pending); its failure is raised here,
    once, as :class:`ReportError`."""
    with _guard:
        future = _pending.pop(key, None) if key is not None else None
    if future is None:
        return
    try:
        future.result()
    except Exception as exc:
        raise ReportError(f"the validation report in {key} could not be completed: {type(exc).__name__}: {exc}",
                          subject=key) from exc


def join_all() -> None:
    """Wait for every piece of work still pending; failures are logged (the attempt is over: a step
    or the outcome's record that needed the work has joined it and raised already)."""
    with _guard:
        keys = list(_pending)
    for key in keys:
        try:
            join(key)
        except ReportError as exc:
            log.error("%s", exc)
