"""The distribution check: did the candidate's predictions move away from production's?

Compared with (``distribution.against``):

- ``baseline`` — production's version answering the same rows in the same
  canary (the default whenever a baseline is served): a candidate whose
  answers moved is caught even on a reference without labels;
- ``labels`` — with no baseline, the predictions against the label
  distribution (class predictions against label classes for a classifier);
- never the golden predictions: they are the candidate itself, run in-process
  (that comparison is the parity check's).

Statistic: the two-sample Kolmogorov-Smirnov distance D (largest gap between
the two empirical CDFs, SciPy's ``ks_2samp``). Chosen over binned KL/PSI/JS
because it needs no bins (the old binned KL measured its own smoothing on
small references), is unchanged by any monotone rescaling of the output, is
bounded in [0, 1], and maps onto a shift in standard deviations: for a normal
distribution moved by k sd, D = 2 Phi(k/2) - 1, so 1 sd is D = 0.383; the
default ``max_ks: 0.35`` flags shifts of about 0.9 sd and more. With several
values per row (class probabilities) D is the largest over the columns; class
predictions against labels use the total variation distance between class
frequencies, which equals D for two classes.
"""

from __future__ import annotations

import numpy as np

from servegate.validation.checks.base import Check, CheckContext, CheckPlan, OutputData, merge, no_data, turned_off
from servegate.validation.report import Measurement


def ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(D, p-value) of the two-sample KS test on the finite values; (nan, nan) when either side is empty."""
    from scipy.stats import ks_2samp

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return float("nan"), float("nan")
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def class_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between the class frequencies of two label/prediction vectors."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    classes = np.union1d(a, b)
    pa = np.array([(a == c).mean() for c in classes]) if len(a) else np.zeros(len(classes))
    pb = np.array([(b == c).mean() for c in classes]) if len(b) else np.zeros(len(classes))
    return float(0.5 * np.abs(pa - pb).sum())


def shift_sd(a: np.ndarray, b: np.ndarray) -> float:
    """How far the mean moved, in standard deviations of the reference side ``b``."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return float("nan")
    sd = float(np.std(b))
    return float((np.mean(a) - np.mean(b)) / sd) if sd > 0 else (0.0 if np.mean(a) == np.mean(b) else float("inf"))


def _against_baseline(out: OutputData) -> tuple[float, float, float]:
    rows = out.table["row"].to_numpy()
    cand, base = out.candidate.outputs[rows], out.baseline.outputs[rows]
    tests = [ks(cand[:, k], base[:, k]) for k in range(cand.shape[1])]
    worst = int(np.nanargmax([d for d, _ in tests])) if np.isfinite([d for d, _ in tests]).any() else 0
    return tests[worst][0], tests[worst][1], shift_sd(cand[:, worst], base[:, worst])


def _against_labels(out: OutputData) -> tuple[float, float | None, float]:
    label = out.table["label"].to_numpy()
    pred = out.table["prediction"].to_numpy()
    if out.task == "classification":
        return class_shift(pred, label), None, shift_sd(pred, label)
    d, p = ks(pred, label)
    return d, p, shift_sd(pred, label)


def _one(ctx: CheckContext, out: OutputData, against: str) -> CheckPlan:
    cfg = ctx.config.distribution
    if against == "baseline" and out.baseline is None:
        return CheckPlan("distribution", failed=out.baseline_failure or "the baseline answered no request")
    if against == "labels" and not out.has_labels:
        return CheckPlan("distribution", skipped=f"{out.plan.no_labels()}: nothing to compare with")
    d, p, moved = _against_baseline(out) if against == "baseline" else _against_labels(out)
    what = "production's predictions on the same rows" if against == "baseline" else "the labels"
    ours = [Measurement("ks_statistic", d, cfg.max_ks, "<=", bool(np.isfinite(d) and d <= cfg.max_ks)),
            Measurement("mean_shift_sd", moved)]
    if p is not None:
        ours.insert(1, Measurement("ks_p_value", p))
    return CheckPlan("distribution", ours=ctx.tag(out, ours), notes=[f"against {what}"])


def plan(ctx: CheckContext) -> CheckPlan:
    cfg = ctx.config.distribution
    early = turned_off("distribution", cfg.enabled) or no_data("distribution", ctx)
    if early:
        return early
    against = cfg.against
    if against == "auto":
        against = "baseline" if ctx.baseline_given else "labels"
    if against == "baseline" and not ctx.baseline_given:
        return CheckPlan("distribution", failed="distribution.against is 'baseline' but no baseline version was given")
    if against == "labels" and not any(o.has_labels for o in ctx.outputs):
        return CheckPlan("distribution", skipped="no baseline (first deployment) and no labels: nothing to compare "
                                                 "the predictions with (golden predictions are the candidate itself)")
    return merge("distribution", [_one(ctx, out, against) for out in ctx.outputs])


CHECK = Check("distribution", "a baseline (production) in the canary, else labels", plan)
