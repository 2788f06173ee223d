"""The validation config: which checks run, their thresholds, batching and deadlines.

One YAML or TOML file (or a mapping, or nothing: every field has a default, so
no config is needed for a first run). Unknown and ill-typed fields are errors
that name the field and the file. Every field is documented in README.md
("Validation config"); keep the two in step.

Checks whose inputs are optional are on by default and run when their input is
there: ``parity`` when golden predictions are given, ``quality`` when the
reference has labels, ``regression`` when a baseline version is served,
``contract`` when production's signature is known, ``load`` when the time to
AVAILABLE is given. Setting ``enabled: true`` explicitly makes the input
required (a missing label column is then an error before any canary starts);
``enabled: false`` turns the check off.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from servegate.errors import ConfigError, naming
from servegate.bake.settings import BakeSettings
from servegate.validation.config_sections import (DistributionCheck, LoadCheck, ContractCheck, OutputSettings,  # noqa: F401
                                                  ParityCheck, QualityCheck, ReferenceColumns, RegressionCheck,
                                                  SanityCheck, Section, ServiceLevelCheck, Task, Warmup)

from servegate.validation.shadow_config import ShadowCheck, TrafficSource

CheckName = Literal["load", "contract", "parity", "quality", "regression", "sanity", "distribution", "service_level",
                    "shadow"]


class ValidationConfigError(ConfigError):
    """The validation config file is missing, does not parse, or has a bad field."""


class DeployConfig(Section):
    """Everything validation can be told. Defaults need no file at all."""

    task: Task = "auto"
    output: str | None = Field(None, description="output tensor to check; default: the only one, else the first by name")
    outputs: dict[str, OutputSettings] = Field(default_factory=dict, description="several outputs, with per-output settings")
    signature_name: str = "serving_default"
    decision_threshold: float = Field(0.5, ge=0, le=1, description="binary classifiers: score >= threshold is class 1")
    batch_size: int = Field(256, ge=1, le=1_000_000)
    concurrency: int = Field(4, ge=1, le=256)
    request_timeout_s: float = Field(30.0, gt=0)
    deadline_s: float = Field(600.0, gt=0, description="the whole validation, sending included")
    warmup_requests: int = Field(1, ge=0, le=100, description="unmeasured requests before the measured pass")
    transport: Literal["auto", "grpc", "rest"] = "auto"
    require: list[CheckName] = Field(default_factory=list, description="checks that must judge, else the verdict fails")
    data_docs: bool = Field(False, description="also build GX's Data Docs site (needs its CDN to render)")
    reference: ReferenceColumns = Field(default_factory=ReferenceColumns)
    load: LoadCheck = Field(default_factory=LoadCheck)
    contract: ContractCheck = Field(default_factory=ContractCheck)
    parity: ParityCheck = Field(default_factory=ParityCheck)
    quality: QualityCheck = Field(default_factory=QualityCheck)
    regression: RegressionCheck = Field(default_factory=RegressionCheck)
    sanity: SanityCheck = Field(default_factory=SanityCheck)
    distribution: DistributionCheck = Field(default_factory=DistributionCheck)
    service_level: ServiceLevelCheck = Field(default_factory=ServiceLevelCheck)
    warmup: Warmup = Field(default_factory=Warmup)
    traffic: TrafficSource = Field(default_factory=TrafficSource)  # recorded production traffic (shadow check)
    shadow: ShadowCheck = Field(default_factory=ShadowCheck)
    bake: BakeSettings = Field(default_factory=BakeSettings)  # servegate.bake: watch production after promotion

    _source: str = PrivateAttr("(defaults: no config file given)")

    @model_validator(mode="after")
    def _one_way_to_name_outputs(self) -> "DeployConfig":
        if self.output is not None and self.outputs:
            raise ValueError("set 'output' (one output) or 'outputs' (several, with settings), not both")
        return self

    def __eq__(self, other: object) -> bool:
        # Two configs that say the same are equal wherever they were read from.
        if not isinstance(other, DeployConfig):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    @property
    def source(self) -> str:
        """Where this config came from (a file path, "(mapping)", or the defaults), for error messages."""
        return self._source

    def error(self, field: str, message: str) -> "ValidationConfigError":
        """A :class:`ValidationConfigError` naming this config's file and ``field``."""
        return ValidationConfigError(f"validation config {self._source}: field {field!r}: {message}", subject=field)


def _first_field(error: ValidationError) -> str | None:
    """The dotted name of the first field pydantic refused (the error's subject)."""
    errors = error.errors()
    return ".".join(str(p) for p in errors[0]["loc"]) or None if errors else None


def _describe(error: ValidationError, where: str) -> str:
    lines = []
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown field {field!r}")
        else:
            got = e.get("input")
            got = f" (got {got!r})" if not isinstance(got, Mapping) else ""
            lines.append(f"field {field!r}: {e['msg'].removeprefix('Value error, ')}{got}")
    return f"validation config {where}: " + "; ".join(lines)


def config_from_mapping(data: Mapping[str, Any] | None, where: str = "(mapping)") -> DeployConfig:
    if data is None:
        return DeployConfig()
    if not isinstance(data, Mapping):
        raise ValidationConfigError(f"validation config {where}: expected a mapping of fields, got {type(data).__name__}",
                                    subject=where)
    try:
        config = DeployConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ValidationConfigError(_describe(exc, where), subject=_first_field(exc) or where) from None
    config._source = where
    return config


def load_config(source: str | Path | Mapping[str, Any] | DeployConfig | None = None) -> DeployConfig:
    """A :class:`DeployConfig` from a YAML/TOML file, a mapping, or defaults (``None``).

    Raises :class:`ValidationConfigError` naming the file and the field.
    """
    if source is None or isinstance(source, DeployConfig):
        return source or DeployConfig()
    if isinstance(source, Mapping):
        return config_from_mapping(source)
    path = Path(source)
    with naming(path):  # the file itself is the subject of what is wrong with it as a whole
        return _load_file(path)


def _load_file(path: Path) -> DeployConfig:
    if not path.is_file():
        raise ValidationConfigError(f"validation config {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationConfigError(f"validation config {path}: cannot read it ({exc})") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ValidationConfigError(f"validation config {path}: unknown format {suffix!r}; expected .yaml, .yml or .toml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ValidationConfigError(f"validation config {path}: does not parse as {suffix[1:].upper()}: {exc}") from None
    return config_from_mapping(data, str(path))
