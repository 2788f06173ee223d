"""The parity check: does the canary answer what the exported model answered in-process (golden)?

It catches serving-side differences (a wrong version loaded, a graph that
differs once served, preprocessing lost in export), not model quality: the
golden predictions are the candidate itself, run in-process.
"""

from __future__ import annotations

from servegate.validation.checks.base import Check, CheckContext, CheckPlan, OutputData, merge, no_data, turned_off
from servegate.validation.gx_suite import Planned


def _one(ctx: CheckContext, out: OutputData) -> CheckPlan:
    cfg = ctx.config.parity
    if not out.has_golden:
        return CheckPlan("parity", skipped=f"no golden predictions for output {out.name!r} (column or golden=)")
    table = out.table
    within = float((table["parity_excess"] <= 0).mean()) if len(table) else 0.0
    planned = Planned("parity", "fraction_within_tolerance", out.table_name, "ExpectColumnValuesToBeBetween",
                      {"column": "parity_excess", "max_value": 0.0, "mostly": cfg.min_fraction},
                      within, cfg.min_fraction, ">=")
    return CheckPlan("parity", planned=ctx.tag(out, [planned]))


def plan(ctx: CheckContext) -> CheckPlan:
    early = turned_off("parity", ctx.config.parity.enabled) or no_data("parity", ctx)
    return early or merge("parity", [_one(ctx, out) for out in ctx.outputs])


CHECK = Check("parity", "golden predictions (the exported model run in-process)", plan)
