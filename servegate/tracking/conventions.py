"""How servegate's runs read in the MLflow 3 UI: experiment kind, run names, descriptions.

- **Experiment kind.** MLflow 3's UI opens an experiment by its tag
  ``mlflow.experimentKind``: ``genai_development`` opens the GenAI overview
  (Traces, Latency), ``custom_model_development`` the model-training view (the
  Runs table, ``?workflowType=machine_learning``). An experiment without the
  tag opens on the GenAI side, which is empty for servegate. Every servegate
  experiment carries ``custom_model_development`` (set at creation, and added
  to an experiment that lacks it, e.g. one made by an older servegate, when it is next used).
- **Run names** say the model, the version and what happened:
  ``churn v7 promoted``, ``churn v8 rejected``, ``churn v9 rolled back``,
  ``churn rollback v9 -> v8``. A deploy run is renamed when its verdict is known.
- **Description** (tag ``mlflow.note.content``, the run page's "Description",
  markdown): the verdict and the reasons, one per line.
- **Created by / Source** (``mlflow.user``, ``mlflow.source.name``/``type``): the
  user and ``servegate``, as MLflow's fluent API would fill them in.
- **Links.** MLflow 3.17's UI no longer reads the experiment tag: a global
  "GenAI | Model training" switch decides, kept in the browser and defaulting
  to GenAI, and the URL parameter ``workflowType=machine_learning`` selects
  Model training. Every link servegate prints carries it (:func:`ui_url`).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"
DESCRIPTION_LIMIT = 4900  # tag values: MLflow guarantees 5000 bytes on every backend

_STATES = {"rolled_back": "rolled back"}
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def ui_url(base_url: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (its runs table) or of one run, in the model-training view."""
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base_url.rstrip('/')}/{page}?{MODEL_TRAINING_VIEW}"


def source_tags() -> dict[str, str]:
    """Who and what created a run (the run page's "Created by" and "Source")."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return {"mlflow.user": user, "mlflow.source.name": "servegate", "mlflow.source.type": "JOB"}


def run_name(model: str, version: int | str | None, state: str) -> str:
    """``"<model> v<version> <state>"`` (``rolled_back`` reads ``rolled back``); no ``v`` part without a version."""
    words = [model] + ([f"v{version}"] if version not in (None, "") else []) + [_STATES.get(state, state)]
    return " ".join(words)


def rollback_run_name(model: str, from_version: int | None, to_version: int | None, changed: bool) -> str:
    if not changed:
        return f"{model} rollback: already v{to_version}"
    return f"{model} rollback v{from_version} -> v{to_version}"


def _bullets(lines: Iterable[str]) -> list[str]:
    return [f"- {line}" for line in lines]


def outcome_description(outcome: Mapping[str, Any], registry_version: str | None) -> str:
    """The deploy run's description: verdict, reasons, where production stands, the registry version."""
    model, version = outcome.get("model_name"), outcome.get("version")
    lines = [f"**{run_name(str(model), version, str(outcome.get('verdict')))}**", ""]
    reasons = list(outcome.get("reasons") or [])
    if reasons:
        lines += ["Reasons:", ""] + _bullets(reasons) + [""]
    before, after = outcome.get("previous_production_version"), outcome.get("production_version")
    lines.append(f"Production serves {_version(after)} (before this attempt: {_version(before)}).")
    if registry_version:
        lines.append(f"Registry: `models:/{model}/{registry_version}`.")
    return clip("\n".join(lines))


def rollback_description(model: str, from_version: int | None, to_version: int | None, moved: list[int],
                         reason: str, cause_run_id: str | None, champion: str | None) -> str:
    lines = [f"**{model}: production rolled back from {_version(from_version)} to {_version(to_version)}**", "",
             f"Reason: {reason}", ""]
    lines += _bullets([f"moved to rejected/ (rolled back): {', '.join(map(str, moved)) or 'none'}",
                       f"champion: registry version {champion}" if champion else "champion: none",
                       ] + ([f"caused by run {cause_run_id}"] if cause_run_id else []))
    return clip("\n".join(lines))


def _version(version: Any) -> str:
    return "nothing" if version is None else f"v{version}"


def clip(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes (MLflow limits tag values in bytes), marked with an ellipsis."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "…"
