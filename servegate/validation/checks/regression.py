"""The regression check: is the candidate worse than production (the baseline) on the same labelled rows?

Both versions answer the same rows in the same canary; the quality figures of
the baseline set the bound for the candidate's: worse by at most
``max(max_relative_degradation * |baseline|, max_absolute_degradation)``.
MAE/RMSE/accuracy are judged by GX (the candidate's per-row column mean), AUC
by servegate's code.
"""

from __future__ import annotations

import numpy as np

from servegate.validation.checks.base import Check, CheckContext, CheckPlan, OutputData, merge, no_data, turned_off
from servegate.validation.checks.quality import bound_planned, figures
from servegate.validation.report import Measurement


def _one(ctx: CheckContext, out: OutputData) -> CheckPlan:
    r = ctx.config.regression
    if out.baseline_failure:
        return CheckPlan("regression", failed=out.baseline_failure)
    if not out.has_labels:
        return CheckPlan("regression", skipped=f"{out.plan.no_labels()} "
                                                "(drift against production is the distribution check's)")
    plan = CheckPlan("regression")
    candidate, baseline = figures(out), figures(out, "baseline_")
    for metric, value in candidate.items():
        b = baseline[metric]
        plan.ours.append(Measurement(f"baseline_{metric}", b))
        higher_is_better = metric in ("accuracy", "auc")
        slack = max(r.max_relative_degradation * abs(b), r.max_absolute_degradation)
        allowed = b - slack if higher_is_better else b + slack
        comparison = ">=" if higher_is_better else "<="
        if metric == "auc":
            if np.isfinite(b):
                plan.ours.append(Measurement("auc", value, allowed, ">=", bool(np.isfinite(value) and value >= allowed)))
        else:
            plan.planned.append(bound_planned("regression", out, metric, value, allowed, comparison))
    ctx.tag(out, plan.planned + plan.ours)
    return plan


def plan(ctx: CheckContext) -> CheckPlan:
    early = turned_off("regression", ctx.config.regression.enabled) or no_data("regression", ctx)
    if early:
        return early
    if not ctx.baseline_given:
        return CheckPlan("regression", skipped="no baseline version served (first deployment)")
    return merge("regression", [_one(ctx, out) for out in ctx.outputs])


CHECK = Check("regression", "a baseline (production) version in the canary and labels", plan)
