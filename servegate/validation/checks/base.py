"""The one interface every check has: the inputs it needs, its measurements, pass/fail.

A check is a :class:`Check`: a name, a line saying what it needs, and a
``plan(ctx) -> CheckPlan`` function. ``plan`` reads the :class:`CheckContext`
(what the send pass and the load produced) and returns

- figures judged by Great Expectations (:class:`Planned`, run as one suite per table),
- figures measured and judged by servegate's own code (:class:`Measurement`),
- or why it did not run (``skipped``) or could not even measure (``failed``).

:func:`judge` then turns a plan and GX's answers into a :class:`CheckResult`.
Checks never send requests and never raise for what the model does wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from servegate.validation.config import DeployConfig
from servegate.validation.gx_suite import Planned, SuiteOutcome
from servegate.validation.outputs import OutputPlan
from servegate.validation.report import CheckResult, Measurement
from servegate.validation.signature import Signature
from servegate.validation.rows import Derived


@dataclass
class OutputData:
    """One validated output after the send pass: its table and what the candidate and baseline said."""

    plan: OutputPlan
    task: str
    task_reason: str
    table_name: str                 # GX table name ("rows" for the primary output)
    table: pd.DataFrame | None      # answered rows; None when the candidate answered nothing
    candidate: Derived | None
    baseline: Derived | None
    has_labels: bool
    has_golden: bool
    label_column: str | None = None  # the label column used, when there are labels
    no_answer: str | None = None    # why there is no table
    baseline_failure: str | None = None  # why the baseline has no answers, when it was asked

    @property
    def name(self) -> str:
        return self.plan.name


@dataclass
class CheckContext:
    """Everything the checks may read. Built by ``validate`` after sending."""

    config: DeployConfig
    served: Signature
    outputs: list[OutputData]
    production_signature: Any = None
    load_seconds: float | None = None
    baseline_given: bool = False
    traffic: Any = None             # traffic.LoadResult of the steady load, or None
    pass_requests: int = 0
    pass_failed: int = 0
    rows_left_out: int = 0
    input_mismatch: str | None = None  # the reference's inputs are not the candidate's
    shadow: Any = None              # shadow_replay.ReplayResult of the recorded traffic, or None

    @property
    def several(self) -> bool:
        return len(self.outputs) > 1

    def tag(self, out: OutputData, items: list[Any]) -> list[Any]:
        """Name the output on each planned figure or measurement when several outputs are validated."""
        if self.several:
            for item in items:
                item.output = out.name
        return items


@dataclass
class CheckPlan:
    name: str
    planned: list[Planned] = field(default_factory=list)
    ours: list[Measurement] = field(default_factory=list)
    skipped: str | None = None      # nothing could be measured, and why
    failed: str | None = None       # failed before measuring, and why
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    name: str
    needs: str                      # the inputs it needs, in words (docs and "not run" reasons)
    plan: Callable[[CheckContext], CheckPlan]


def turned_off(name: str, enabled: bool | None) -> CheckPlan | None:
    return CheckPlan(name, skipped="turned off in the config") if enabled is False else None


def no_data(name: str, ctx: CheckContext) -> CheckPlan | None:
    """A failed plan when the data checks cannot run at all (wrong inputs, no answers)."""
    if ctx.input_mismatch:
        return CheckPlan(name, failed=f"not run: {ctx.input_mismatch}")
    missing = [o for o in ctx.outputs if o.table is None]
    if missing:
        return CheckPlan(name, failed=missing[0].no_answer or "the candidate answered no request")
    return None


def merge(name: str, parts: list[CheckPlan]) -> CheckPlan:
    """One plan from per-output plans; skipped only when every part was skipped."""
    plan = CheckPlan(name)
    for part in parts:
        plan.planned += part.planned
        plan.ours += part.ours
        plan.notes += part.notes
        plan.failed = plan.failed or part.failed
    skips = [p.skipped for p in parts if p.skipped]
    if skips and len(skips) == len(parts):
        plan.skipped = skips[0] if len(set(skips)) == 1 else "; ".join(skips)
    elif skips:
        plan.notes += skips
    return plan


# The order figures are listed in, within a check; others follow in the order measured.
METRIC_ORDER = ("fraction_within_tolerance", "baseline_mae", "mae", "baseline_rmse", "rmse", "baseline_accuracy",
                "accuracy", "baseline_auc", "auc", "non_finite_rows", "min_output", "max_output", "ks_statistic",
                "ks_p_value", "mean_shift_sd", "requests_measured", "p50_ms", "p95_ms", "p99_ms", "baseline_p50_ms",
                "baseline_p95_ms", "baseline_p99_ms", "p95_ratio", "error_rate", "reference_pass_error_rate")


def judge(plan: CheckPlan, gx: SuiteOutcome, planned_index: dict[int, int]) -> CheckResult:
    """The check's result from its plan and GX's answers (``planned_index``: id(Planned) -> suite index)."""
    if plan.failed:
        return CheckResult(plan.name, "failed", plan.failed, list(plan.ours))
    messages = list(plan.notes)
    measurements = list(plan.ours)
    for p in plan.planned:
        i = planned_index[id(p)]
        ok, observed, error = gx.success.get(i, False), gx.observed.get(i), gx.exceptions.get(i)
        value = p.value if p.value is not None or not isinstance(observed, (int, float)) else float(observed)
        measurements.append(Measurement(p.metric, value, p.threshold, p.comparison, ok, "gx", p.expectation,
                                        output=p.output))
        if error:
            messages.append(f"{p.metric}: GX could not evaluate it ({error.splitlines()[0][:200]})")
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    measurements.sort(key=lambda m: rank.get(m.metric, len(rank)))
    if plan.skipped and not plan.planned and not any(m.threshold is not None for m in plan.ours):
        return CheckResult(plan.name, "skipped", "; ".join([plan.skipped] + messages), measurements)
    failed = [m for m in measurements if m.threshold is not None and not m.passed]
    if failed:
        text = "; ".join(m.describe() for m in failed)
        return CheckResult(plan.name, "failed", "; ".join([f"out of bounds: {text}"] + messages), measurements)
    text = ", ".join(m.describe() for m in measurements)
    parts = [text] + messages + ([plan.skipped] if plan.skipped else [])
    return CheckResult(plan.name, "passed", "; ".join(p for p in parts if p), measurements)
