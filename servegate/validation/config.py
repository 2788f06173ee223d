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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servegate.errors import ConfigError


class ValidationConfigError(ConfigError):
    """The validation config file is missing, does not parse, or has a bad field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ReferenceColumns(_Section):
    """How reference columns map to the signature's inputs and the expected values."""

    columns: dict[str, str] = Field(default_factory=dict, description="input name -> column holding it (scalar or list/array)")
    prefixes: dict[str, str] = Field(default_factory=dict, description="input name -> prefix of several scalar columns (prefix0, prefix1, ... or prefix_0, ...)")
    label_column: str = "label"
    golden_column: str = "golden"


class LoadCheck(_Section):
    enabled: bool | None = None
    deadline_s: float = Field(120.0, gt=0)


class ContractCheck(_Section):
    enabled: bool | None = None
    allow_breaking_change: bool = False


class ParityCheck(_Section):
    enabled: bool | None = None
    atol: float = Field(1e-5, ge=0)
    rtol: float = Field(1e-4, ge=0)
    min_fraction: float = Field(0.99, ge=0, le=1)


class QualityCheck(_Section):
    enabled: bool | None = None
    min_accuracy: float | None = Field(None, ge=0, le=1)
    min_auc: float | None = Field(None, ge=0, le=1)
    max_mae: float | None = Field(None, ge=0)
    max_rmse: float | None = Field(None, ge=0)


class RegressionCheck(_Section):
    enabled: bool | None = None
    # The candidate may be worse than the baseline by at most
    # max(max_relative_degradation * |baseline|, max_absolute_degradation).
    max_relative_degradation: float = Field(0.05, ge=0)
    max_absolute_degradation: float = Field(0.0, ge=0)


class SanityCheck(_Section):
    enabled: bool = True
    min_value: float | None = None
    max_value: float | None = None
    max_kl_divergence: float | None = Field(0.5, ge=0)
    bins: int = Field(10, ge=2, le=1000)

    @model_validator(mode="after")
    def _range(self) -> "SanityCheck":
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} is greater than max_value {self.max_value}")
        return self


class ServiceLevelCheck(_Section):
    enabled: bool = True
    max_p50_ms: float | None = Field(None, gt=0)
    max_p95_ms: float | None = Field(1000.0, gt=0)
    max_p99_ms: float | None = Field(None, gt=0)
    max_error_rate: float = Field(0.0, ge=0, le=1)


class ValidationConfig(_Section):
    """Everything validation can be told. Defaults need no file at all."""

    task: Literal["auto", "regression", "classification"] = "auto"
    output: str | None = Field(None, description="output tensor to check; default: the only one, else the first by name")
    signature_name: str = "serving_default"
    decision_threshold: float = Field(0.5, ge=0, le=1, description="binary classifiers: score >= threshold is class 1")
    batch_size: int = Field(256, ge=1, le=1_000_000)
    concurrency: int = Field(4, ge=1, le=256)
    request_timeout_s: float = Field(30.0, gt=0)
    deadline_s: float = Field(600.0, gt=0, description="the whole validation, sending included")
    warmup_requests: int = Field(1, ge=0, le=100, description="unmeasured requests before the measured pass")
    transport: Literal["auto", "grpc", "rest"] = "auto"
    reference: ReferenceColumns = Field(default_factory=ReferenceColumns)
    load: LoadCheck = Field(default_factory=LoadCheck)
    contract: ContractCheck = Field(default_factory=ContractCheck)
    parity: ParityCheck = Field(default_factory=ParityCheck)
    quality: QualityCheck = Field(default_factory=QualityCheck)
    regression: RegressionCheck = Field(default_factory=RegressionCheck)
    sanity: SanityCheck = Field(default_factory=SanityCheck)
    service_level: ServiceLevelCheck = Field(default_factory=ServiceLevelCheck)


def _describe(error: ValidationError, where: str) -> str:
    lines = []
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown field {field!r}")
        else:
            lines.append(f"field {field!r}: {e['msg']} (got {e.get('input')!r})")
    return f"validation config {where}: " + "; ".join(lines)


def config_from_mapping(data: Mapping[str, Any] | None, where: str = "(mapping)") -> ValidationConfig:
    if data is None:
        return ValidationConfig()
    if not isinstance(data, Mapping):
        raise ValidationConfigError(f"validation config {where}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return ValidationConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ValidationConfigError(_describe(exc, where)) from None


def load_config(source: str | Path | Mapping[str, Any] | ValidationConfig | None = None) -> ValidationConfig:
    """A :class:`ValidationConfig` from a YAML/TOML file, a mapping, or defaults (``None``).

    Raises :class:`ValidationConfigError` naming the file and the field.
    """
    if source is None or isinstance(source, ValidationConfig):
        return source or ValidationConfig()
    if isinstance(source, Mapping):
        return config_from_mapping(source)
    path = Path(source)
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
