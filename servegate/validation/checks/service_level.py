"""The service-level check: latency and errors under a short steady load (see :mod:`..traffic`).

Judged by absolute limits (p50/p95/p99 by GX over the candidate's load
requests, as "at least q% of requests at or below the bound") and, when a
baseline is served, by the candidate's p95 relative to production's under the
same interleaved load (servegate's code). Too few measured requests are not
judged: the check says so and is listed among the gates that did not run.
"""

from __future__ import annotations

import numpy as np

from servegate.validation.checks.base import Check, CheckContext, CheckPlan
from servegate.validation.gx_suite import Planned
from servegate.validation.report import Measurement

TABLE = "requests"


def _percentile(values: np.ndarray, q: int) -> float | None:
    # inverted_cdf: the smallest latency with at least q% of requests at or below it,
    # exactly what the GX expectation (values <= bound, mostly=q%) asserts.
    return float(np.percentile(values, q, method="inverted_cdf")) if len(values) else None


def _latency(ctx: CheckContext, plan: CheckPlan, judged: bool) -> None:
    sl, load = ctx.config.service_level, ctx.traffic
    lat = load.latencies("candidate")
    for q, bound in ((50, sl.max_p50_ms), (95, sl.max_p95_ms), (99, sl.max_p99_ms)):
        value = _percentile(lat, q)
        if bound is None or not judged:
            plan.ours.append(Measurement(f"p{q}_ms", value))
        else:
            plan.planned.append(Planned("service_level", f"p{q}_ms", TABLE, "ExpectColumnValuesToBeBetween",
                                        {"column": "latency_ms", "max_value": bound, "mostly": q / 100.0},
                                        value, bound, "<="))
    base = load.latencies("baseline") if "baseline" in load.samples else None
    if base is None or not len(base):
        return
    for q in (50, 95, 99):
        plan.ours.append(Measurement(f"baseline_p{q}_ms", _percentile(base, q)))
    cand95, base95 = _percentile(lat, 95), _percentile(base, 95)
    ratio = cand95 / base95 if cand95 is not None and base95 else float("nan")
    if sl.max_p95_ratio is not None and judged and len(base) >= sl.min_requests:
        slower = cand95 is not None and cand95 - base95 > sl.ratio_min_difference_ms
        ok = bool(np.isfinite(ratio) and (ratio <= sl.max_p95_ratio or not slower))
        plan.ours.append(Measurement("p95_ratio", ratio, sl.max_p95_ratio, "<=", ok))
        if ratio > sl.max_p95_ratio and not slower:
            plan.notes.append(f"p95 ratio above {sl.max_p95_ratio:g} but within "
                              f"{sl.ratio_min_difference_ms:g} ms of production's: not a slowdown")
    else:
        plan.ours.append(Measurement("p95_ratio", ratio))


def _errors(ctx: CheckContext, plan: CheckPlan, judged: bool) -> None:
    sl, load = ctx.config.service_level, ctx.traffic
    n = len(load.samples.get("candidate", []))
    failed = len(load.errors("candidate"))
    rate = failed / n if n else 0.0
    if judged:
        plan.planned.append(Planned("service_level", "error_rate", TABLE, "ExpectColumnValuesToBeInSet",
                                    {"column": "ok", "value_set": [True], "mostly": 1.0 - sl.max_error_rate},
                                    rate, sl.max_error_rate, "<="))
    else:
        plan.ours.append(Measurement("error_rate", rate, sl.max_error_rate if failed else None, "<=",
                                     rate <= sl.max_error_rate))
    pass_rate = ctx.pass_failed / ctx.pass_requests if ctx.pass_requests else 0.0
    plan.ours.append(Measurement("reference_pass_error_rate", pass_rate,
                                 sl.max_error_rate if judged or ctx.pass_failed else None, "<=",
                                 pass_rate <= sl.max_error_rate))
    if failed:
        plan.notes.append(f"first error: {load.errors('candidate')[0][:300]}")


def plan(ctx: CheckContext) -> CheckPlan:
    sl, load = ctx.config.service_level, ctx.traffic
    if not sl.enabled:
        return CheckPlan("service_level", skipped="turned off in the config")
    if ctx.input_mismatch:
        return CheckPlan("service_level", failed=f"not run: {ctx.input_mismatch}")
    if load is None:
        return CheckPlan("service_level", skipped="no load was sent")
    measured = len(load.latencies("candidate"))
    judged = measured >= sl.min_requests
    plan = CheckPlan("service_level", ours=[Measurement("requests_measured", float(measured))])
    _latency(ctx, plan, judged)
    _errors(ctx, plan, judged)
    plan.notes.insert(0, f"steady load: {sum(len(s) for s in load.samples.values())} requests of "
                         f"{load.rows_per_request} row(s), concurrency {load.concurrency}, {load.seconds:.1f} s, "
                         f"stopped by {load.stopped_by}" + (", candidate and baseline interleaved"
                                                            if "baseline" in load.samples else ""))
    if not judged:
        plan.skipped = (f"too few requests: {measured} measured, at least {sl.min_requests} "
                        "(service_level.min_requests) needed to judge latency")
    return plan


CHECK = Check("service_level", "a steady load on the canary (always available)", plan)
