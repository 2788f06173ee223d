"""The sections of the validation config, one pydantic model each (see config.py for the whole).

Every field is documented in README.md ("Validation config"); keep the two in step.
Sections reject unknown fields, so a typo is an error naming the field, never a
silently ignored setting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from servegate.config_section import Section

Task = Literal["auto", "regression", "classification"]

#: quality thresholds by the task they judge; a threshold of the other task is a config error.
TASK_OF_THRESHOLD = {"min_accuracy": "classification", "min_auc": "classification",
                     "max_mae": "regression", "max_rmse": "regression"}


class ReferenceColumns(Section):
    """How reference columns map to the signature's inputs and the expected values."""

    columns: dict[str, str] = Field(default_factory=dict, description="input name -> column holding it (scalar or list/array)")
    prefixes: dict[str, str] = Field(default_factory=dict, description="input name -> prefix of several scalar columns (prefix0, prefix1, ... or prefix_0, ...)")
    label_column: str = "label"
    golden_column: str = "golden"
    # Every other column of the reference is refused: a misspelt label column would
    # otherwise turn the quality and regression checks off without a word.
    ignore_columns: list[str] = Field(default_factory=list, description="columns no check reads (ids, timestamps)")


class LoadCheck(Section):
    enabled: bool | None = None
    deadline_s: float = Field(120.0, gt=0)


class ContractCheck(Section):
    enabled: bool | None = None
    allow_breaking_change: bool = False


class ParityCheck(Section):
    enabled: bool | None = None
    atol: float = Field(1e-5, ge=0)
    rtol: float = Field(1e-4, ge=0)
    min_fraction: float = Field(0.99, ge=0, le=1)


class QualityCheck(Section):
    enabled: bool | None = None
    min_accuracy: float | None = Field(None, ge=0, le=1)
    min_auc: float | None = Field(None, ge=0, le=1)
    max_mae: float | None = Field(None, ge=0)
    max_rmse: float | None = Field(None, ge=0)

    def thresholds(self) -> dict[str, float]:
        """The thresholds that are set, by field name."""
        return {k: v for k in TASK_OF_THRESHOLD if (v := getattr(self, k)) is not None}


class RegressionCheck(Section):
    enabled: bool | None = None
    # The candidate may be worse than the baseline by at most
    # max(max_relative_degradation * |baseline|, max_absolute_degradation).
    max_relative_degradation: float = Field(0.05, ge=0)
    max_absolute_degradation: float = Field(0.0, ge=0)


class SanityCheck(Section):
    enabled: bool = True
    min_value: float | None = None
    max_value: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        # A KL check between the canary and the golden predictions would compare the candidate
        # with itself, so there is none; a setting for it is refused, never dropped.
        if isinstance(data, dict):
            for old in ("max_kl_divergence", "bins"):
                if old in data:
                    raise ValueError(f"'sanity.{old}' was removed: prediction drift is now the 'distribution' "
                                     "check against production (or labels); use 'distribution.max_ks'")
        return data

    @model_validator(mode="after")
    def _range(self) -> "SanityCheck":
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} is greater than max_value {self.max_value}")
        return self


class DistributionCheck(Section):
    """Prediction drift: candidate vs production (baseline) on the same rows, else vs the labels."""

    enabled: bool | None = None
    # Two-sample Kolmogorov-Smirnov statistic D (see docs/validation.md for why KS):
    # for a normal distribution shifted by k standard deviations D = 2*Phi(k/2) - 1,
    # so a 1 sd shift gives D = 0.383; 0.35 flags shifts of about 0.9 sd and more.
    max_ks: float = Field(0.35, gt=0, le=1)
    against: Literal["auto", "baseline", "labels"] = "auto"


class ServiceLevelCheck(Section):
    """A short steady load on the candidate (and production, interleaved) in the same canary."""

    enabled: bool = True
    requests: int = Field(200, ge=1, le=1_000_000, description="measured requests per version")
    duration_s: float | None = Field(None, gt=0, description="instead of a count: keep the load this long")
    # The default load's bound in time, so that it stays proportionate to the model: the demo
    # model's 200 requests take 0.1-0.25 s, a ResNet50's about 4 s on 2 loaded cores (docs/validation.md).
    budget_s: float | None = Field(2.0, gt=0, description="stop the load this long after its start once "
                                   "min_requests were measured per version; applied unless requests or "
                                   "duration_s is set and budget_s is not")
    concurrency: int = Field(4, ge=1, le=256)
    rows_per_request: int = Field(1, ge=1, le=1_000_000)
    min_requests: int = Field(50, ge=1, description="fewer measured requests: not judged (too few)")
    max_p50_ms: float | None = Field(None, gt=0)
    max_p95_ms: float | None = Field(1000.0, gt=0)
    max_p99_ms: float | None = Field(None, gt=0)
    max_error_rate: float = Field(0.0, ge=0, le=1)
    max_p95_ratio: float | None = Field(1.5, gt=0, description="candidate p95 / baseline p95")
    # A ratio of two millisecond figures is mostly scheduler jitter: the ratio only
    # fails when the candidate's p95 is also this much above production's.
    ratio_min_difference_ms: float = Field(5.0, ge=0)

    def load_budget_s(self) -> float | None:
        """The budget the load applies: a configured ``requests`` or ``duration_s`` is applied exactly,
        so the default budget does not cut it (a configured ``budget_s`` still applies)."""
        fields = self.model_fields_set
        if "budget_s" in fields or not fields & {"requests", "duration_s"}:
            return self.budget_s
        return None


class OutputSettings(Section):
    """Per-output overrides (``outputs: {name: {...}}``); unset fields take the top-level value."""

    task: Task | None = None
    decision_threshold: float | None = Field(None, ge=0, le=1)
    label_column: str | None = None
    quality: QualityCheck | None = None


class Warmup(Section):
    """TF Serving warm-up requests written at stage (assets.extra/tf_serving_warmup_requests)."""

    enabled: bool = True
    requests: int = Field(100, ge=1, le=1000, description="reference rows (or newest recorded requests) "
                          "searched for distinct request shapes: one warm-up record each")
    source: Literal["reference", "traffic"] = Field(
        "reference", description="traffic: the newest recorded requests (traffic.logs) instead of reference rows")
