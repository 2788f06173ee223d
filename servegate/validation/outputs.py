"""Which outputs are validated, with which settings, and how each output's task is decided.

:func:`check_config_against_signature` is the up-front half: it needs only the
config and the model's signature (no TensorFlow, Prefect or MLflow), so the
deploy command calls it before anything starts. It names the validated outputs,
refuses an ``output:`` that the model does not have (listing those it has), and
refuses a quality threshold that cannot apply to a task already known from the
config or the output's shape. Without ``output:``/``outputs:`` every output a
check can read (numbers, not strings) is validated, never just one of them.
:func:`check_thresholds_with_answers` refuses the rest once the exported model's
in-process answers are known, still before any run is opened.

:func:`decide_task` is the late half: with ``task: auto`` and one value per row
the task depends on the data, decided from the candidate's answers and the
labels once they are known; the report says how.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from servegate.validation.config import DeployConfig, load_config
from servegate.validation.config_sections import TASK_OF_THRESHOLD, QualityCheck
from servegate.validation.signature import Signature, parse_signature


@dataclass(frozen=True)
class OutputPlan:
    """One validated output and its effective settings (per-output values over the top level)."""

    name: str
    task: str                    # "auto" | "regression" | "classification", as configured
    decision_threshold: float
    label_column: str | None     # None: the shared label column belongs to another output (its own label_column)
    quality: QualityCheck
    primary: bool                # the first validated output: plots, a plain golden array and ``report.task``
    settings_field: str          # the config field its settings come from, for error messages
    quality_field: str = "quality"  # the config field its quality thresholds come from
    width: int | None = field(default=None)  # values per row, when the signature says
    own_label: bool = False      # its label column is its own (outputs.<name>.label_column), not the shared one

    def no_labels(self) -> str:
        """Why this output has no labels, for a check that needs them."""
        if self.label_column is None:
            return (f"no labels for output {self.name!r}: the label column belongs to another output "
                    f"(set outputs.{self.name}.label_column)")
        return f"the reference has no label column {self.label_column!r}"


def _width(signature: Signature, name: str) -> int | None:
    shape = signature.outputs[name].shape
    if shape is None or len(shape) < 2:
        return 1 if shape is not None else None
    tail = shape[1:]
    return int(np.prod(tail)) if all(d is not None for d in tail) else None


def _names(config: DeployConfig, signature: Signature) -> tuple[list[str], str]:
    """The validated output names and the config field that chose them."""
    existing = sorted(signature.outputs)
    listing = ", ".join(existing) or "none"
    if config.output is not None:
        if config.output not in signature.outputs:
            raise config.error("output", f"{config.output!r} is not an output of the model (outputs: {listing})")
        return [config.output], "output"
    if config.outputs:
        unknown = [n for n in config.outputs if n not in signature.outputs]
        if unknown:
            raise config.error(f"outputs.{unknown[0]}", f"{unknown[0]!r} is not an output of the model "
                               f"(outputs: {listing})")
        return list(config.outputs), "outputs"
    checkable = [n for n in existing if signature.outputs[n].dtype != "string"]
    if not checkable:
        why = f"only string outputs ({listing})" if existing else "no outputs"
        raise config.error("output", f"the model's signature declares {why}; there is nothing to validate")
    return checkable, "output"


def check_threshold_fits(config: DeployConfig, plan: OutputPlan, task: str, how: str) -> None:
    """Raise a config error naming a quality threshold that does not apply to ``task``."""
    for name in plan.quality.thresholds():
        if TASK_OF_THRESHOLD[name] != task:
            fitting = ", ".join(k for k, t in TASK_OF_THRESHOLD.items() if t == task)
            raise config.error(f"{plan.quality_field}.{name}",
                               f"judges {TASK_OF_THRESHOLD[name]}, but output {plan.name!r} is {task} ({how}); "
                               f"the thresholds that apply to {task} are {fitting}: remove it, or set 'task' to "
                               "say what the output is")


def plan_outputs(config: DeployConfig, signature: Signature) -> list[OutputPlan]:
    """The validated outputs with their effective settings; raises config errors naming the field."""
    names, chose = _names(config, signature)
    plans = []
    for i, name in enumerate(names):
        own = config.outputs.get(name)
        field_name = f"outputs.{name}" if own is not None else chose
        plans.append(OutputPlan(
            name=name, task=(own.task if own and own.task else config.task),
            decision_threshold=(own.decision_threshold if own and own.decision_threshold is not None
                                else config.decision_threshold),
            label_column=(own.label_column if own and own.label_column else config.reference.label_column),
            quality=(own.quality if own and own.quality is not None else config.quality),
            primary=i == 0, settings_field=field_name, width=_width(signature, name),
            quality_field=f"outputs.{name}.quality" if own and own.quality is not None else "quality",
            own_label=bool(own and own.label_column)))
    # A shared label column that one output claims by name is that output's only.
    claimed = {p.label_column for p in plans if p.own_label}
    plans = [replace(p, label_column=None) if not p.own_label and p.label_column in claimed else p for p in plans]
    for plan in plans:
        known = known_task(plan)
        if known is not None:
            check_threshold_fits(config, plan, *known)
    return plans


def known_task(plan: OutputPlan) -> tuple[str, str] | None:
    """(task, how it was decided) when the config or the output's shape already says; else None."""
    if plan.task != "auto":
        return plan.task, "set in the config"
    if plan.width is not None and plan.width > 1:
        return "classification", f"{plan.width} values per row"
    return None


def decide_task(plan: OutputPlan, outputs: np.ndarray | None, labels: np.ndarray | None) -> tuple[str, str]:
    """(task, how it was decided) for one output, from the config, its width, its answers and the labels.

    One value per row is a binary classifier when every answer lies in [0, 1]
    and every label is 0 or 1 (a sigmoid output); otherwise it is a regression.
    """
    known = known_task(plan)
    if known is not None:
        return known
    width = outputs.shape[1] if outputs is not None and outputs.ndim == 2 else 1
    if width > 1:
        return "classification", f"{width} values per row"
    if labels is None:
        return "regression", "one value per row and no labels to tell a classifier from it"
    finite = outputs[np.isfinite(outputs)] if outputs is not None else np.empty(0)
    binary_labels = bool(len(labels)) and bool(np.isin(np.asarray(labels, dtype="float64"), (0.0, 1.0)).all())
    in_unit = bool(len(finite)) and bool(((finite >= 0) & (finite <= 1)).all())
    if binary_labels and in_unit:
        return "classification", "one output in [0, 1] and 0/1 labels (a sigmoid classifier)"
    why = "labels are not all 0/1" if not binary_labels else "answers outside [0, 1]"
    return "regression", f"one value per row and {why}"


def check_config_against_signature(config: Any, signature: Any) -> list[str]:
    """Check a validation config against a model's signature before anything starts.

    ``config``: a :class:`DeployConfig`, a path, a mapping or None;
    ``signature``: export's ``ModelSignature``, its ``to_dict()``, TF Serving
    metadata or a plain mapping. Returns the names of the validated outputs.
    Raises :class:`ValidationConfigError` naming the file, the field, what was
    found and what was expected. Imports neither TensorFlow, Prefect nor MLflow.
    """
    config = load_config(config)
    sig = parse_signature(signature, config.signature_name)
    return [p.name for p in plan_outputs(config, sig)]


def check_thresholds_with_answers(config: DeployConfig, reference: Any, answers: dict[str, np.ndarray]) -> None:
    """Refuse a quality threshold of the other task once the model's answers decide it.

    With ``task: auto`` and one value per row, the task depends on the answers
    (a sigmoid in [0, 1] with 0/1 labels is a classifier): ``answers`` are the
    exported model's in-process predictions (the golden ones), which the canary
    must reproduce, so the same decision is made here as on the canary, before
    anything is staged. ``reference``: a checked :class:`~servegate.validation.reference.Reference`.
    """
    for plan in plan_outputs(config, reference.signature):
        column = reference.label_columns.get(plan.name)
        if not plan.quality.thresholds() or known_task(plan) is not None or plan.name not in answers:
            continue
        task, how = decide_task(plan, np.asarray(answers[plan.name], dtype="float64"),
                                reference.labels(column) if column else None)
        check_threshold_fits(config, plan, task, how)
