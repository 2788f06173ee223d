"""The validation report: one verdict, one line per check, every figure with its threshold.

A :class:`ValidationReport` is plain data (dataclasses) so that the deploy
flow can log every figure to MLflow, print it as JSON for CI, and render it as
markdown for a Prefect artifact. A check is ``passed``, ``failed`` or
``skipped`` (with the reason); the verdict is ``failed`` when any check
failed, else ``passed``. Each :class:`Measurement` says which engine judged it:
``gx`` (an expectation of the Great Expectations suite, named in
``expectation``) or ``servegate`` (our own code, where GX has no fitting
expectation).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["passed", "failed", "skipped"]
CHECK_ORDER = ("load", "contract", "parity", "quality", "regression", "sanity", "distribution", "service_level")


@dataclass
class Measurement:
    """One measured figure against its threshold (``threshold`` None: reported, not judged)."""

    metric: str
    value: float | None
    threshold: float | None = None
    comparison: str = "<="  # value <comparison> threshold passes
    passed: bool = True
    engine: Literal["gx", "servegate"] = "servegate"
    expectation: str | None = None  # the GX expectation type that judged it
    output: str | None = None  # the validated output it belongs to, named when several are

    @property
    def key(self) -> str:
        return f"{self.output}.{self.metric}" if self.output else self.metric

    def describe(self) -> str:
        value = "n/a" if self.value is None else _fmt(self.value)
        if self.threshold is None:
            return f"{self.key} = {value}"
        return f"{self.key} = {value} (threshold {self.comparison} {_fmt(self.threshold)})"


@dataclass
class CheckResult:
    name: str
    status: Status
    message: str
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    @property
    def judged(self) -> bool:
        """True when at least one figure was held against a threshold."""
        return any(m.threshold is not None for m in self.measurements)


@dataclass
class ValidationReport:
    """Everything one validation found. ``verdict`` is derived from ``checks``."""

    model_name: str
    candidate: str            # "label canary" / "version 3"
    baseline: str | None
    rows: int
    checks: list[CheckResult]
    timings: dict[str, float] = field(default_factory=dict)
    task: str = "regression"
    transport: str = "grpc"
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path (plots, GX results, report.html)
    # What was validated and how its task was decided, and what was required: a reader of the report
    # must see what a pass covered.
    outputs: list[dict[str, Any]] = field(default_factory=list)  # [{name, task, task_reason, label_column}]
    required: list[str] = field(default_factory=list)             # the config's ``require``
    unvalidated_outputs: list[str] = field(default_factory=list)  # outputs of the model nobody checked

    @property
    def gates_not_run(self) -> list[dict[str, str]]:
        """Checks that judged nothing (skipped, or figures without a threshold), with the reason."""
        return [{"check": c.name, "reason": c.message} for c in self.checks
                if c.status == "skipped" or (c.status == "passed" and not c.judged)]

    @property
    def verdict(self) -> Literal["passed", "failed"]:
        return "failed" if any(c.status == "failed" for c in self.checks) else "passed"

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "failed"]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r} in the report (checks: {[c.name for c in self.checks]})")

    def figures(self) -> dict[str, float]:
        """Flat ``check.metric -> value`` (finite values only), e.g. for MLflow metrics."""
        out = {}
        for c in self.checks:
            for m in c.measurements:
                if m.value is not None and math.isfinite(m.value):
                    out[f"{c.name}.{m.key}"] = float(m.value)
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        data["failed_checks"] = self.failed_checks
        data["gates_not_run"] = self.gates_not_run
        return _clean(data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_markdown(self) -> str:
        icon = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
        lines = [
            f"# Validation of `{self.model_name}`: **{self.verdict.upper()}**",
            "",
            f"- candidate: {self.candidate}" + (f"; baseline: {self.baseline}" if self.baseline else "; baseline: none"),
            f"- reference rows: {self.rows}; task: {self.task}; transport: {self.transport}",
        ]
        lines += [f"- output `{o['name']}`: {o['task']} ({o['task_reason']}); labels: "
                  f"{o.get('label_column') or 'none'}" for o in self.outputs]
        if self.unvalidated_outputs:
            lines.append(f"- outputs not validated: {', '.join(self.unvalidated_outputs)} (config `outputs:` "
                         "validates several)")
        if self.failed_checks:
            lines.append(f"- failed checks: {', '.join(self.failed_checks)}")
        if self.gates_not_run:
            lines.append("- **gates that did not run**: " + "; ".join(
                f"{g['check']} ({g['reason']})" for g in self.gates_not_run))
        if self.required:
            lines.append(f"- required to judge (config `require`): {', '.join(self.required)}")
        lines += ["", "| check | status | figure | threshold | judged by | message |", "|---|---|---|---|---|---|"]
        for c in self.checks:
            rows = c.measurements or [None]
            for i, m in enumerate(rows):
                figure = "" if m is None else f"{m.key} = {'n/a' if m.value is None else _fmt(m.value)}"
                threshold = "" if m is None or m.threshold is None else f"{m.comparison} {_fmt(m.threshold)}"
                # A figure with no threshold is reported, not judged: leave the column empty.
                judge = "" if m is None or m.threshold is None else (
                    f"GX `{m.expectation}`" if m.engine == "gx" else "servegate")
                if m is not None and m.threshold is not None and not m.passed:
                    figure = f"**{figure}**"
                name, status, message = (c.name, icon[c.status], c.message.replace("|", "\\|")) if i == 0 else ("", "", "")
                lines.append(f"| {name} | {status} | {figure} | {threshold} | {judge} | {message} |")
        if self.timings:
            lines += ["", "Timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())]
        if self.artifacts:
            lines += ["", "Artifacts:"] + [f"- {k}: `{Path(v).name}`" for k, v in sorted(self.artifacts.items())]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> dict[str, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        from servegate.validation.report_html import render_html

        paths = {"report_json": out_dir / "report.json", "report_md": out_dir / "report.md",
                 "report_html": out_dir / "report.html"}
        self.artifacts.update({k: str(v) for k, v in paths.items()})
        paths["report_json"].write_text(self.to_json())
        paths["report_md"].write_text(self.to_markdown())
        paths["report_html"].write_text(render_html(self))
        return paths


def _fmt(x: float) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return f"{x:.4g}"


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf become strings ("nan", "inf"), numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
