"""Prefect artifacts for a deploy run: the report, the version table, the plots.

Keys (lowercase, dashes) are per model, so that the Artifacts page shows each
one's history across runs: ``<model>-validation-report``, ``<model>-versions``,
``<model>-plots``. Plots are embedded in the markdown as PNG data URIs: a
Prefect UI on another machine cannot read a local file path.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

_KEY_BAD = re.compile(r"[^a-z0-9-]+")
# Prefect stores an artifact in its database: keep embedded images modest.
MAX_EMBEDDED_IMAGE_BYTES = 400_000


def artifact_key(model_name: str, what: str) -> str:
    return _KEY_BAD.sub("-", f"{model_name}-{what}".lower()).strip("-")


class ProgressArtifacts:
    """A step's progress (:func:`servegate.deploy.progress.report_progress`) as one Prefect progress
    artifact per task run and kind, inside a task run; nothing elsewhere. Made at the first report, so
    that the step's first work is not kept waiting on the API."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], Any] = {}

    def __call__(self, name: str, what: str, fraction: float, description: str) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.context import TaskRunContext

        context = TaskRunContext.get()
        if context is None:
            return
        key = (str(context.task_run.id), what)
        if key not in self._ids:
            self._ids[key] = create_progress_artifact(0.0, key=artifact_key(name, what), description=description)
        update_progress_artifact(self._ids[key], round(100.0 * fraction, 1), description=description)


def version_table(store, model_name: str) -> list[dict[str, Any]]:
    """One row per version the store knows, newest first: area, serving or not, reason."""
    status = store.status(model_name)
    rows: list[dict[str, Any]] = []
    for area, versions in sorted(status.versions.items()):
        for v in versions:
            rows.append(
                {
                    "version": int(v),
                    "area": area,
                    "serving": "yes" if area == "production" and status.serving_version == v else "",
                    "reason": status.rejected_reasons.get(v, "") if area == "rejected" else "",
                }
            )
    return sorted(rows, key=lambda r: (-r["version"], r["area"]))


def publish_deploy_artifacts(record, outcome) -> list[str]:
    """Create the run's artifacts from the attempt's record and outcome; returns their keys."""
    name = record.name
    keys = []
    summary = [
        f"# Deploy of `{name}`: **{outcome.verdict.upper()}**",
        "",
        f"- candidate version: {outcome.version}",
        f"- production serves: {outcome.production_version} (before: {outcome.previous_production_version})",
        f"- MLflow run: `{outcome.mlflow_run_id}` ({outcome.mlflow_tracking_uri})",
    ]
    if outcome.reasons:
        summary += ["", "## Reasons", ""] + [f"- {r}" for r in outcome.reasons]
    report_dir = Path(record.report_dir) if record.report_dir else None
    report_md = report_dir / "report.md" if report_dir else None
    body = report_md.read_text() if report_md and report_md.is_file() else \
        "_no validation report (the run stopped before validation)_\n"
    key = artifact_key(name, "validation-report")
    create_markdown_artifact("\n".join(summary) + "\n\n" + body, key=key, description=f"deploy of {name}: {outcome.verdict}")
    keys.append(key)
    from servegate.deploy import resources

    key = artifact_key(name, "versions")
    store = resources.store(record)
    create_table_artifact(version_table(store, name), key=key, description=f"versions of {name} after this run")
    keys.append(key)
    changed = report_dir / "shadow_most_changed.csv" if report_dir else None
    if changed is not None and changed.is_file():
        import csv

        with open(changed, newline="") as handle:
            rows = list(csv.DictReader(handle))
        key = artifact_key(name, "shadow-most-changed")
        create_table_artifact(rows, key=key, description=f"{name}: the recorded production requests answered most "
                                                         "differently, production's answer beside the candidate's")
        keys.append(key)
    plots = _plots(report_dir) if report_dir else []
    if plots:
        key = artifact_key(name, "plots")
        create_markdown_artifact("\n\n".join(plots), key=key, description=f"validation plots of {name}")
        keys.append(key)
    return keys


def _plots(report_dir: Path) -> list[str]:
    out = []
    for path in sorted(report_dir.rglob("*.png")):
        label = path.stem
        data = path.read_bytes()
        if len(data) > MAX_EMBEDDED_IMAGE_BYTES:
            out.append(f"### {label}\n\n`{path}` ({len(data)} bytes, too large to embed)")
            continue
        encoded = base64.b64encode(data).decode("ascii")
        out.append(f"### {label}\n\n![{label}](data:image/png;base64,{encoded})")
    return out
