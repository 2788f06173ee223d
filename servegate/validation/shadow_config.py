"""The ``traffic:`` and ``shadow:`` sections of the validation config (see docs/validation.md, "Shadow check").

``traffic`` says where recorded production traffic is (``PredictionLog``
TFRecord files from the bundled server's ``logging_config`` or from
``servegate tap``) and how much of it to replay; ``shadow`` holds the
thresholds the candidate's answers are judged by against production's.
"""

from __future__ import annotations

from pydantic import Field

from servegate.validation.config_sections import Section


class TrafficSource(Section):
    """Recorded requests to replay: a glob of log files, the newest ``max_requests`` of them, none older
    than ``max_age_hours``."""

    logs: str | None = Field(None, description="glob of request log files, e.g. /var/log/serving/mymodel-*.tfrecord")
    max_requests: int = Field(2000, ge=1, le=1_000_000)
    max_age_hours: float | None = Field(168.0, gt=0, description="older records are left out; null: any age")


class ShadowCheck(Section):
    """Thresholds on how differently the candidate answers production's own requests.

    Defaults, and why:
    - ``max_flip_rate`` 0.05: an honest retrain moves a few borderline requests across the
      decision boundary; one request in twenty answered differently is a different model.
    - ``max_positive_rate_change`` 0.05: a binary classifier whose share of positives moves by five
      points changes what downstream systems act on, even when few single answers flip.
    - ``max_rel_change_p99`` 0.25: for regression, 99% of answers within 25% of production's
      (relative to the larger of |production| and the median |production|, so answers near zero do
      not blow it up); scale-free, so it applies to any target.
    - ``max_abs_change_p99`` null: an absolute bound depends on the target's units; set it to judge it.
    """

    enabled: bool | None = None
    max_flip_rate: float = Field(0.05, ge=0, le=1)
    max_positive_rate_change: float = Field(0.05, ge=0, le=1)
    max_rel_change_p99: float | None = Field(0.25, ge=0)
    max_abs_change_p99: float | None = Field(None, ge=0)
