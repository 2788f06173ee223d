"""Steps "check bake settings", "snapshot production" and "bake production" (see servegate.bake).

- "check bake settings" (preflight): a bake needs ``--production-url``;
- "snapshot production", right before "promote version": the window before
  promotion, from production's Prometheus page (default: the production URL +
  ``/monitoring/prometheus/metrics``) or, where production has no metrics,
  from a steady probe of reference rows. No undo: it changes nothing;
- "bake production", right after "verify production": the same source for
  the bake's duration; its judge raises :class:`BakeAlarm` when an alarm fired
  (or, with ``bake.require_traffic``, when the bake saw too little traffic to
  judge: ``inconclusive``), and the runner's undo of "promote version" rolls
  production back through the one release path. The report dir gets ``bake/bake.png`` and
  ``bake/bake.json``; in a Prefect run the step keeps a progress artifact.

A bake of 0 seconds (the default) makes all three do nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from servegate.deploy import resources
from servegate.deploy.verdict import BakeAlarm
from servegate.deploy.progress import report_progress, say
from servegate.deploy.record import AttemptRecord
from servegate.errors import ConfigError
from servegate.tracking.owner import BAKE_RUN_TAG, BAKE_VERSION_TAG, IN_PROGRESS

MAX_PROBE_ROWS = 100


def settings_of(record: AttemptRecord):
    """The config's ``bake:`` section and the duration that applies (``--bake`` wins over the file)."""
    settings = resources.config(record).bake
    duration = settings.duration_s if record.request.bake_s is None else float(record.request.bake_s)
    return settings, duration


def check_bake(record: AttemptRecord) -> AttemptRecord:
    settings, duration = settings_of(record)
    where = "--bake" if record.request.bake_s is not None else f"bake.duration_s in {record.request.config}"
    if not 0 <= duration <= 21600:
        raise ConfigError(f"{where}: {duration:g} seconds is out of range: expected 0 (no bake) to 21600")
    if duration > 0 and not record.request.production_url:
        raise ConfigError(f"{where}: a bake of {duration:g} s watches the production server, but no "
                          "--production-url was given: pass --production-url, or a bake of 0")
    return record


def _probe_rows(record: AttemptRecord) -> list[dict[str, Any]]:
    rows = []
    for batch in resources.reference(record).batches(1):
        rows.append({k: v[:1] for k, v in batch.items()})
        if len(rows) >= MAX_PROBE_ROWS:
            break
    return rows


def _probe(record: AttemptRecord, settings):
    from servegate.bake.probe import Probe

    return Probe(record.request.production_url, record.name, _probe_rows(record), settings.probe_rate,
                 settings.request_timeout_s)


def snapshot_production(record: AttemptRecord) -> AttemptRecord:
    """The window before promotion (metrics, else the probe); nothing when the bake is off."""
    from servegate.bake.baking import MetricsSource, measure_before
    from servegate.bake.metrics import MetricsUnavailable

    settings, duration = settings_of(record)
    if duration == 0:
        return record
    url = settings.metrics_url_for(record.request.production_url)
    seconds = settings.before_window_s()
    try:
        before = measure_before(MetricsSource(url, record.name, settings.request_timeout_s), seconds)
        mode, source = "metrics", url
    except MetricsUnavailable as exc:
        if settings.metrics_url:  # named by the user: refused, never silently replaced by the probe
            raise ConfigError(f"bake.metrics_url in {record.request.config}: {exc}") from None
        say(f"snapshot production: no metrics ({exc}); a probe of reference rows stands in")
        with _probe(record, settings) as probe:
            before = measure_before(probe, seconds or settings.interval_s)
        mode, source = "probe", record.request.production_url
    span = f"the {before.seconds:.1f} s before promotion" if seconds or mode == "probe" else "since production started"
    say(f"snapshot production ({mode}): {before.requests} requests, error rate {_num(before.error_rate)}, "
        f"p95 {_num(before.p95_ms)} ms in {span}")
    return record.but(bake_before={"mode": mode, "source": source, "before": before.to_dict()})


def bake_production(record: AttemptRecord) -> AttemptRecord:
    """Watch production for the bake's duration; the record gets the result, the report its plot."""
    from servegate.bake.baking import BakeResult, MetricsSource, before_not_judged, run_bake
    from servegate.bake.metrics import WindowStats

    settings, duration = settings_of(record)
    if duration == 0 or not record.bake_before:
        return record
    mode, source = record.bake_before["mode"], record.bake_before["source"]
    before = WindowStats.from_dict(record.bake_before["before"])
    result = BakeResult(mode, source, duration, settings.interval_s, time.time())
    result.before_not_judged = before_not_judged(before, settings)
    if result.before_not_judged:
        say(f"bake production: {result.before_not_judged}")
    say(f"bake production: watching {source} ({mode}) for {duration:g} s, judged every {settings.interval_s:g} s")
    _mark_bake(record, IN_PROGRESS)  # left as it is if this process dies: the next deploy marks it interrupted
    tick = _tick(record.name)
    if mode == "metrics":
        result = run_bake(MetricsSource(source, record.name, settings.request_timeout_s), result, before, settings,
                          on_tick=tick)
    else:
        with _probe(record, settings) as probe:
            result = run_bake(probe, result, before, settings, on_tick=tick)
    tick(1.0, result)
    if result.verdict == "inconclusive" and settings.require_traffic:
        result.not_judged += "; bake.require_traffic is set: production is rolled back"
    said = result.alarm["message"] if result.alarm else (result.not_judged or "no alarm")
    say(f"bake production: {result.verdict} after {result.ended_at - result.started_at:.1f} s ({said})")
    data = result.to_dict()
    _write_report(record, data, settings)
    _mark_bake(record, result.verdict)
    return record.but(bake=data, figures={**record.figures, **bake_figures(data)})


def _mark_bake(record: AttemptRecord, state: str) -> None:
    """The bake's state on the MLflow run (``servegate.bake``) and its registry version (``bake``).

    ``in_progress`` while watching, then the bake's verdict. A deploy killed mid-bake leaves
    ``in_progress``, and the next run opened for the model, finding the run's owner gone, changes
    it to ``interrupted`` (:func:`servegate.tracking.owner.end_abandoned_runs`): the version in
    production was never baked, and MLflow says so.
    """
    tracker = resources.tracker(record.request.tracking_uri)
    if record.run_id:
        tracker.set_tags(record.run_id, {BAKE_RUN_TAG: state})
    if record.registry_version:
        tracker.tag_version(record.name, record.registry_version, {BAKE_VERSION_TAG: state})


def bake_figures(result: dict[str, Any]) -> dict[str, float]:
    """``bake.*`` figures for the outcome and MLflow (finite numbers only)."""
    out: dict[str, float] = {"bake.seconds": round(result["ended_at"] - result["started_at"], 3),
                             "bake.alarm": 1.0 if result["alarm"] else 0.0,
                             "bake.inconclusive": 1.0 if result["verdict"] == "inconclusive" else 0.0}
    for prefix, stats in (("bake.", result.get("bake")), ("bake.before_", result.get("before"))):
        for key in ("requests", "errors", "error_rate", "p95_ms"):
            value = (stats or {}).get(key)
            if value is not None:
                out[f"{prefix}{key}"] = float(value)
    return out


def judge_bake(record: AttemptRecord) -> None:
    """Raise :class:`BakeAlarm` (carrying the record) when the bake's alarm fired, or when it was
    inconclusive and ``bake.require_traffic`` asks for traffic."""
    verdict = (record.bake or {}).get("verdict")
    if verdict == "inconclusive" and settings_of(record)[0].require_traffic:
        alarm = {"name": "inconclusive", "message": record.bake["not_judged"],
                 "figures": {"requests": float((record.bake.get("bake") or {}).get("requests", 0))}}
        record = record.but(bake={**record.bake, "alarm": alarm})  # the event and the outcome name it
        raise BakeAlarm(f"bake inconclusive: {alarm['message']}", alarm, record=record)
    elif verdict == "alarm":
        alarm = record.bake["alarm"]
        raise BakeAlarm(f"bake alarm {alarm['name']}: {alarm['message']}", alarm, record=record)


def _write_report(record: AttemptRecord, data: dict[str, Any], settings) -> None:
    """``bake/bake.json`` and ``bake/bake.png`` in the report dir (the flow publishes every PNG there)."""
    from servegate.bake.plots import bake_plot

    out = Path(record.report_dir or record.work_dir) / "bake"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bake.json").write_text(json.dumps(data, indent=2))
    bake_plot(data, {"max_error_rate": settings.max_error_rate, "max_p95_ms": settings.max_p95_ms}, out)


def _tick(name: str):
    """The bake's ``on_tick``: its progress (fraction watched, the window so far) to the runner's sinks."""
    def tick(fraction: float, result) -> None:
        bake = result.bake or {}
        said = (f"bake: {bake.get('requests', 0)} requests, error rate {_num(bake.get('error_rate'))}, "
                f"p95 {_num(bake.get('p95_ms'))} ms" + (f"; alarm {result.alarm['name']}" if result.alarm else ""))
        report_progress(name, "bake", fraction, said)

    return tick


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"

