"""The load check: did the canary reach AVAILABLE before the configured deadline?"""

from __future__ import annotations

from servegate.validation.checks.base import Check, CheckContext, CheckPlan, turned_off
from servegate.validation.report import Measurement


def plan(ctx: CheckContext) -> CheckPlan:
    cfg = ctx.config.load
    off = turned_off("load", cfg.enabled)
    if off:
        return off
    if ctx.load_seconds is None:
        return CheckPlan("load", skipped="the caller gave no time to AVAILABLE (load_seconds)")
    ok = ctx.load_seconds <= cfg.deadline_s
    m = Measurement("seconds_to_available", float(ctx.load_seconds), cfg.deadline_s, "<=", ok)
    return CheckPlan("load", ours=[m], notes=["AVAILABLE before the deadline" if ok else
                                              "AVAILABLE only after the deadline"])


CHECK = Check("load", "the time the canary took to become AVAILABLE (load_seconds)", plan)
