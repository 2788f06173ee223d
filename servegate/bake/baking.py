"""The bake: watch production for a while after a promotion and stop at the first alarm.

A *source* is anything with ``snapshot() -> Snapshot``: production's metrics
page (:class:`MetricsSource`) or the steady probe
(:class:`servegate.bake.probe.Probe`). :func:`measure_before` reads the
window before promotion; :func:`run_bake` reads one snapshot at its start and
one every ``interval_s``, and judges the whole bake window so far and, for
errors, also the last interval (a failure that starts late is not diluted by
a healthy start; one interval's p95 is too noisy to judge alone).
Production that stops answering its metrics page for two evaluations in a row
fires ``production_unreachable``. A bake whose window never held
``min_requests`` requests was never judged: its verdict is ``inconclusive``
(Argo Rollouts' word), never ``passed``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

from servegate.bake.alarms import Alarm, evaluate
from servegate.bake.metrics import MetricsUnavailable, Snapshot, WindowStats, scrape, window
from servegate.bake.settings import BakeSettings


class Source(Protocol):
    def snapshot(self) -> Snapshot: ...


@dataclass
class MetricsSource:
    """Production's Prometheus page, read for one model."""

    url: str
    model_name: str
    timeout_s: float = 5.0

    def snapshot(self) -> Snapshot:
        return scrape(self.url, self.model_name, self.timeout_s)


@dataclass
class BakeResult:
    """How a bake went: plain values (they travel in the attempt record and into the report)."""

    mode: str                     # "metrics" | "probe"
    source: str                   # the metrics URL, or the production URL the probe sent to
    duration_s: float
    interval_s: float
    started_at: float             # epoch seconds
    ended_at: float = 0.0
    verdict: str = "passed"       # "passed" | "alarm" | "inconclusive" (too few requests: not judged)
    alarm: dict[str, Any] | None = None
    before: dict[str, Any] | None = None   # WindowStats before promotion
    bake: dict[str, Any] | None = None     # WindowStats of the whole bake (up to the alarm)
    ticks: list[dict[str, Any]] = field(default_factory=list)  # per evaluation: elapsed_s, interval, window
    not_judged: str | None = None          # why the verdict is inconclusive
    before_not_judged: str | None = None   # why the alarms against the window before promotion did not judge

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_before(source: Source, seconds: float, sleep: Callable[[float], None] = time.sleep) -> WindowStats:
    """The window before promotion: the ``seconds`` before it, as they were, however quiet (the
    alarms against it judge only when it holds ``min_requests``); everything since the server started
    only when ``seconds`` is 0 (``bake.baseline_s: 0``, asked for by name)."""
    first = source.snapshot()
    if seconds > 0:
        sleep(seconds)
        return window(first, source.snapshot())
    return window(Snapshot(at=first.at), first)


def before_not_judged(before: WindowStats, settings: BakeSettings) -> str | None:
    """Why the alarms against the window before promotion cannot judge (None: they can)."""
    if before.requests >= settings.min_requests:
        return None
    return (f"{before.requests} requests in the {before.seconds:.1f} s before promotion, fewer than "
            f"bake.min_requests ({settings.min_requests}): only the absolute limits judge the bake")


def _judge(before: WindowStats | None, whole: WindowStats, last: WindowStats, elapsed: float,
           settings: BakeSettings) -> Alarm | None:
    # Latency only over the whole bake: one short interval's p95 on a busy host is noise, not a cliff.
    for stats, span, latency in ((whole, f"first {elapsed:.1f} s of the bake", True),
                                 (last, f"last {last.seconds:.1f} s", False)):
        alarms = evaluate(before, stats, settings, latency)
        if alarms:
            alarm = alarms[0]
            alarm.message = f"{alarm.message}, in the {span}"
            alarm.figures["elapsed_s"] = round(elapsed, 3)
            return alarm
    return None


def _first_snapshot(source: Source, sleep: Callable[[float], None], tries: int = 3) -> Snapshot:
    for attempt in range(tries):
        try:
            return source.snapshot()
        except MetricsUnavailable:
            if attempt == tries - 1:
                raise
            sleep(1.0)
    raise AssertionError("unreachable")


def run_bake(source: Source, result: BakeResult, before: WindowStats | None, settings: BakeSettings, *,
             on_tick: Callable[[float, BakeResult], None] | None = None,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> BakeResult:
    """Watch ``source`` for ``result.duration_s``; fills and returns ``result`` (verdict, alarm, figures)."""
    result.before = before.to_dict() if before else None
    try:
        start = _first_snapshot(source, sleep)
    except MetricsUnavailable as exc:
        return _end(result, Alarm("production_unreachable", f"production's metrics could not be read: {exc}"))
    t0, prev, failures = clock(), start, 0
    while (elapsed := clock() - t0) < result.duration_s:
        sleep(min(result.interval_s, result.duration_s - elapsed))
        elapsed = clock() - t0
        try:
            snap = source.snapshot()
        except MetricsUnavailable as exc:
            failures += 1
            if failures >= 2:
                return _end(result, Alarm("production_unreachable",
                                          f"production stopped answering for {failures} evaluations: {exc}",
                                          {"elapsed_s": round(elapsed, 3)}))
            continue
        failures = 0
        whole, last = window(start, snap), window(prev, snap)
        result.bake = whole.to_dict()
        result.ticks.append({"elapsed_s": round(elapsed, 3), "interval": last.to_dict(), "window": whole.to_dict()})
        alarm = _judge(before, whole, last, elapsed, settings)
        if alarm is not None:  # straight back: the rollback waits on nothing else
            return _end(result, alarm)
        if on_tick is not None:
            on_tick(min(1.0, elapsed / result.duration_s), result)
        prev = snap
    if not result.bake or result.bake["requests"] < settings.min_requests:
        seen = result.bake["requests"] if result.bake else 0
        result.not_judged = (f"{seen} requests in the bake window, fewer than bake.min_requests "
                             f"({settings.min_requests}): the alarms did not judge")
        result.verdict = "inconclusive"
    return _end(result, None)


def _end(result: BakeResult, alarm: Alarm | None) -> BakeResult:
    result.ended_at = time.time()
    if alarm is not None:
        result.verdict, result.alarm = "alarm", alarm.to_dict()
    return result
