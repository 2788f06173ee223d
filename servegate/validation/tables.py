"""Step 2 of ``validate``: from the placed answers to one rows table per validated output.

For each output: the rows both versions answered, its labels and golden
predictions, the task decided (:func:`.outputs.decide_task`, with a quality
threshold of the other task refused by name), and the per-row table that the
checks and GX read. Also the plots drawn from those tables and the load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from servegate.validation import plots
from servegate.validation.checks.base import OutputData
from servegate.validation.config import DeployConfig
from servegate.validation.outputs import OutputPlan, check_threshold_fits, decide_task, known_task
from servegate.validation.rows import derive, rows_table


def _no_table(plan: OutputPlan, name: str, why: str) -> OutputData:
    task, how = known_task(plan) or ("n/a", "not decided: no answers")
    return OutputData(plan, task, how, name, None, None, None, False, False, no_answer=why)


def _output(i: int, plan: OutputPlan, cand: Any, base: Any, reference: Any, goldens: dict[str, np.ndarray],
            config: DeployConfig, baseline_desc: str | None) -> OutputData:
    name = "rows" if i == 0 else f"rows_{i}"
    if plan.name not in cand.outputs:
        errors = cand.errors
        return _no_table(plan, name, f"the candidate answered no request: {errors[0] if errors else 'none sent'}")
    answered = cand.answered.copy()
    base_values, baseline_failure = None, None
    if base is not None:
        if plan.name in base.outputs:
            base_values = base.outputs[plan.name]
            answered &= base.answered
        else:
            baseline_failure = (f"the baseline {baseline_desc} answered no request: "
                                f"{base.errors[:1] or 'none sent'}")
    # Labels were checked for the outputs of the signature the reference was loaded
    # against; a served output of another name still has them when its column was checked.
    column = reference.label_columns.get(plan.name)
    if column is None and plan.name not in reference.signature.outputs:
        column = plan.label_column if plan.label_column in set(reference.label_columns.values()) else None
    labels = reference.labels(column) if column else None
    rows = np.flatnonzero(answered)
    task, how = decide_task(plan, cand.outputs[plan.name][rows], None if labels is None else labels[rows])
    check_threshold_fits(config, plan, task, how)
    cand_d = derive(cand.outputs[plan.name], task, plan.decision_threshold)
    base_d = derive(base_values, task, plan.decision_threshold) if base_values is not None else None
    golden = goldens.get(plan.name)
    table = rows_table(cand_d, answered, labels, golden, base_d, task, plan.decision_threshold, config.parity)
    return OutputData(plan, task, how, name, table, cand_d, base_d, labels is not None, golden is not None,
                      label_column=column, baseline_failure=baseline_failure)


def build_outputs(plans: list[OutputPlan], cand: Any, base: Any, reference: Any, goldens: dict[str, np.ndarray],
                  config: DeployConfig, baseline_desc: str | None, mismatch: str | None) -> list[OutputData]:
    """One :class:`OutputData` per validated output (without a table when nothing could be compared)."""
    if cand is None:
        return [_no_table(p, "rows" if i == 0 else f"rows_{i}", mismatch or "nothing sent")
                for i, p in enumerate(plans)]
    return [_output(i, p, cand, base, reference, goldens, config, baseline_desc) for i, p in enumerate(plans)]


def draw_plots(outputs: list[OutputData], traffic: Any, out: Path) -> dict[str, str]:
    """The report's pictures: each validated output, candidate and production on the same axes (the
    first output's under the plain names), and the latency of the steady load."""
    drawn: dict[str, str] = {}
    several = len(outputs) > 1
    for i, data in enumerate(outputs):
        if data.table is not None and len(data.table):
            drawn.update(plots.compare_outputs(data.table, data.task, out, output=data.plan.name if several else None,
                                               primary=i == 0))
    if traffic is not None:
        latencies = {who: traffic.latencies(who) for who in traffic.samples}
        drawn["plot_latency"] = str(plots.latency_cdf(latencies, out / "latency.png"))
    return drawn
