"""The sanity check: no NaN/Inf in any answer, every value within the configured range (GX)."""

from __future__ import annotations

import numpy as np

from servegate.validation.checks.base import Check, CheckContext, CheckPlan, OutputData, merge, no_data
from servegate.validation.gx_suite import Planned


def _extreme(table, column: str, fn) -> float | None:
    return float(fn(table[column])) if len(table) and table[column].notna().any() else None


def _one(ctx: CheckContext, out: OutputData) -> CheckPlan:
    s, table, name = ctx.config.sanity, out.table, out.table_name
    nonfinite = float((~table["output_finite"]).sum()) if len(table) else 0.0
    planned = [Planned("sanity", "non_finite_rows", name, "ExpectColumnValuesToBeInSet",
                       {"column": "output_finite", "value_set": [True]}, nonfinite, 0.0, "<=")]
    if s.min_value is not None:
        planned.append(Planned("sanity", "min_output", name, "ExpectColumnValuesToBeBetween",
                               {"column": "output_min", "min_value": s.min_value},
                               _extreme(table, "output_min", np.nanmin), s.min_value, ">="))
    if s.max_value is not None:
        planned.append(Planned("sanity", "max_output", name, "ExpectColumnValuesToBeBetween",
                               {"column": "output_max", "max_value": s.max_value},
                               _extreme(table, "output_max", np.nanmax), s.max_value, "<="))
    return CheckPlan("sanity", planned=ctx.tag(out, planned))


def plan(ctx: CheckContext) -> CheckPlan:
    if not ctx.config.sanity.enabled:
        return CheckPlan("sanity", skipped="turned off in the config")
    return no_data("sanity", ctx) or merge("sanity", [_one(ctx, out) for out in ctx.outputs])


CHECK = Check("sanity", "the candidate's answers", plan)
