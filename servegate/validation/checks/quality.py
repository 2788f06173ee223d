"""The quality check: the candidate's figures against the labels, judged by configured thresholds.

Regression: MAE and RMSE (GX ``expect_column_mean_to_be_between`` on the
per-row ``abs_error`` / ``sq_error``); classification: accuracy (the mean of
``correct``) and AUC (servegate's code: AUC is a ranking, not a per-row
property, so GX has no expectation for it). A threshold for the other task
never reaches here: it is a config error (see :mod:`servegate.validation.outputs`).
"""

from __future__ import annotations

import numpy as np

from servegate.validation.checks import metrics
from servegate.validation.checks.base import Check, CheckContext, CheckPlan, OutputData, merge, no_data, turned_off
from servegate.validation.gx_suite import Planned
from servegate.validation.report import Measurement

# metric -> (per-row column, power the bound is raised to for that column's mean)
_MEAN_OF = {"mae": ("abs_error", 1), "rmse": ("sq_error", 2), "accuracy": ("correct", 1)}


def figures(out: OutputData, prefix: str = "") -> dict[str, float]:
    """The task's figures for the candidate (``prefix=""``) or the baseline (``"baseline_"``)."""
    table = out.table
    label = table["label"].to_numpy()
    pred = table[f"{prefix}prediction"].to_numpy()
    if out.task == "regression":
        return {"mae": metrics.mae(pred, label), "rmse": metrics.rmse(pred, label)}
    model = out.baseline if prefix else out.candidate
    score = model.score[table["row"].to_numpy()]
    auc = metrics.binary_auc(score, label) if score.ndim == 1 else metrics.multiclass_auc(score, label)
    return {"accuracy": metrics.accuracy(pred, label), "auc": auc}


def bound_planned(check: str, out: OutputData, metric: str, value: float, bound: float, comparison: str) -> Planned:
    """The GX expectation "mean of the metric's per-row column is within ``bound``"."""
    column, power = _MEAN_OF[metric]
    key = "max_value" if comparison == "<=" else "min_value"
    return Planned(check, metric, out.table_name, "ExpectColumnMeanToBeBetween",
                   {"column": column, key: bound ** power}, value, bound, comparison)


def _one(ctx: CheckContext, out: OutputData) -> CheckPlan:
    if not out.has_labels:
        return CheckPlan("quality", skipped=out.plan.no_labels())
    thresholds = {"mae": out.plan.quality.max_mae, "rmse": out.plan.quality.max_rmse,
                  "accuracy": out.plan.quality.min_accuracy, "auc": out.plan.quality.min_auc}
    plan = CheckPlan("quality")
    for metric, value in figures(out).items():
        bound = thresholds[metric]
        comparison = "<=" if metric in ("mae", "rmse") else ">="
        if bound is None:
            plan.ours.append(Measurement(metric, value))
        elif metric == "auc":
            ok = bool(np.isfinite(value) and value >= bound)
            plan.ours.append(Measurement(metric, value, bound, ">=", ok))
        else:
            plan.planned.append(bound_planned("quality", out, metric, value, bound, comparison))
    if not plan.planned and not any(m.threshold is not None for m in plan.ours):
        plan.skipped = (f"no quality threshold set for output {out.name!r}: figures reported, quality not judged "
                        f"(task {out.task}: set {'max_mae/max_rmse' if out.task == 'regression' else 'min_accuracy/min_auc'})")
    ctx.tag(out, plan.planned + plan.ours)
    return plan


def plan(ctx: CheckContext) -> CheckPlan:
    early = turned_off("quality", ctx.config.quality.enabled) or no_data("quality", ctx)
    return early or merge("quality", [_one(ctx, out) for out in ctx.outputs])


CHECK = Check("quality", "labels in the reference and a threshold (quality.min_accuracy, max_mae, ...)", plan)
