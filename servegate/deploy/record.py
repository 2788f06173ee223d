"""The records one deploy attempt passes from step to step: plain, serialisable values.

- :class:`DeployRequest`: what the attempt is asked to do (the CLI's flags, the flow's parameters).
- :class:`AttemptRecord`: what the attempt has produced so far. Every step takes
  one and returns an updated copy; nothing in it is a live object (paths are
  strings, the golden predictions are a file in the work dir), so the Prefect
  UI shows real task inputs and a step could run in another process.
- :class:`DeployOutcome`: the result, as ``servegate deploy --json`` prints it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from servegate.settings import default_tracking_uri, resolve_store_root

#: DeployRequest fields whose flow parameter has another name (the CLI's flag: ``--store``)
_PARAMETER_NAMES = {"store_root": "store"}


@dataclass
class DeployRequest:
    """What one deploy attempt is asked to do."""

    model_path: str
    name: str
    reference: str
    store_root: str | None = None
    serving: str = "process"
    config: str | None = None
    production_url: str | None = None
    tracking_uri: str | None = None
    work_dir: str | None = None
    docker_image: str | None = None
    canary_deadline_s: float | None = None  # --canary-deadline; default: the config's load.deadline_s
    production_deadline_s: float = 60.0
    custom_objects: tuple[str, ...] = ()  # modules that register the model's custom Keras objects
    unsafe_deserialization: bool = False  # Keras safe_mode=False (Lambda layers): runs code from the file
    bake_s: float | None = None  # --bake: seconds to watch production after promotion (default: config bake.duration_s)
    traffic: str | None = None  # --traffic: glob of recorded request logs (default: the config's traffic.logs)

    def __post_init__(self) -> None:
        self.model_path = str(self.model_path)
        self.reference = str(self.reference)
        self.store_root = str(resolve_store_root(self.store_root, "store", object_store=True))  # flow parameter
        self.config = str(self.config) if self.config else None
        self.tracking_uri = self.tracking_uri or default_tracking_uri()
        self.work_dir = str(self.work_dir) if self.work_dir else None
        self.custom_objects = tuple(self.custom_objects or ())

    def to_parameters(self) -> dict[str, Any]:
        """The ``deploy-model`` flow's parameters: every field, under the flow's names (JSON values)."""
        values = asdict(self)
        values["custom_objects"] = list(self.custom_objects)
        return {_PARAMETER_NAMES.get(key, key): value for key, value in values.items()}

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> "DeployRequest":
        """The request the ``deploy-model`` flow's parameters (:meth:`to_parameters`) describe."""
        fields_by_parameter = {parameter: key for key, parameter in _PARAMETER_NAMES.items()}
        return cls(**{fields_by_parameter.get(key, key): value for key, value in parameters.items()})

    def params(self) -> dict[str, Any]:
        """The request as MLflow parameters."""
        return {
            "model_path": self.model_path,
            "reference": self.reference,
            "store_root": self.store_root,
            "serving": self.serving,
            "config": self.config or "(defaults)",
            "production_url": self.production_url or "(none)",
            "bake_s": "(config)" if self.bake_s is None else self.bake_s,
            "traffic": "(config)" if self.traffic is None else self.traffic,
        }


@dataclass
class AttemptRecord:
    """What the attempt has produced so far; each field is filled by the step named beside it."""

    request: DeployRequest
    work_dir: str
    flow_run_id: str | None = None
    previous_production: int | None = None  # check inputs
    savedmodel_dir: str | None = None  # export model
    signature: dict[str, Any] | None = None  # export model
    model_digest: str | None = None  # export model: the source's digest (deploy/unchanged.py), kept at stage
    reference_rows: int | None = None  # check reference data
    golden_path: str | None = None  # compute golden predictions (.npz in the work dir)
    run_id: str | None = None  # open MLflow run
    version: int | None = None  # stage version
    registry_version: str | None = None  # register in MLflow
    validation_verdict: str | None = None  # validate on canary: "passed" | "failed"
    reasons: list[str] = field(default_factory=list)  # validate on canary (failed checks)
    figures: dict[str, float] = field(default_factory=dict)  # validate on canary
    report_dir: str | None = None  # validate on canary
    task: str | None = None  # validate on canary: the first validated output's task
    outputs: list[dict[str, Any]] = field(default_factory=list)  # validate on canary: name, task, task_reason, label_column
    gates_not_run: list[dict[str, str]] = field(default_factory=list)  # validate on canary: [{check, reason}]
    promoted: bool = False  # promote version
    production_verified: bool | None = None  # verify production (None: no production server named)
    rolled_back: bool = False  # the undo of promote version
    bake_before: dict[str, Any] | None = None  # snapshot production: mode, source, the window before promotion
    bake: dict[str, Any] | None = None  # bake production: servegate.bake.baking.BakeResult as a dict
    timings: dict[str, float] = field(default_factory=dict)  # every step, by the step runner
    started_s: float | None = None  # the process's age when the first step began (deploy/clock.py)
    inputs_checked: bool = False  # the CLI checked the request (check_request) before the preflight

    @property
    def name(self) -> str:
        return self.request.name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | "AttemptRecord") -> "AttemptRecord":
        if isinstance(data, AttemptRecord):
            return data
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["request"] = DeployRequest(**dict(values["request"]))
        return cls(**values)

    def but(self, **changes: Any) -> "AttemptRecord":
        """A copy with ``changes``: steps return new records, never edit the one they got."""
        return replace(self, **changes)

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir)


@dataclass
class DeployOutcome:
    """The result of one attempt, as the CLI prints it with ``--json``.

    ``verdict``: a :class:`servegate.deploy.verdict.Verdict` value (its exit code, final state, event).
    """

    model_name: str
    verdict: str
    version: int | None = None
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    production_version: int | None = None
    previous_production_version: int | None = None
    mlflow_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    registry_version: str | None = None
    prefect_flow_run_id: str | None = None
    report_uri: str | None = None  # the report, Data Docs and plots as MLflow artifacts
    # What validation judged: the first validated output's task, every validated output (name, task, why
    # that task, its label column or None), and each check that judged nothing with the reason.
    task: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    gates_not_run: list[dict[str, str]] = field(default_factory=list)
    # The bake, when there was one: verdict "passed" | "alarm" | "inconclusive" (too few requests: not
    # judged), why it was not judged, and why the window before promotion could not be compared with.
    bake: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # Seconds since the process that ran the deploy started (the CLI's, or the worker's flow-run process):
    # until the outcome was printed, and until the first step began (interpreter start, imports, set-up).
    wall_s: float | None = None
    startup_s: float | None = None

    @property
    def exit_code(self) -> int:
        from servegate.deploy.verdict import exit_code_for

        return exit_code_for(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

