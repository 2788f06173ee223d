"""Validating a canary: reference data, config, checks as a Great Expectations suite, report, plots.

The entry points (see docs/ARCHITECTURE.md, "validation")::

    from servegate.validation import validate, load_config, load_reference, ValidationConfig, ValidationReport
    config = load_config("validation.yaml")             # or None for the defaults
    reference = load_reference("ref.parquet", signature, config)   # before the canary starts
    report = validate(runner_or_client, reference, config, candidate="canary", baseline="stable",
                      production_signature=prod_sig, load_seconds=t, out_dir=run_dir)
    report.verdict, report.checks, report.to_json(), report.to_markdown()
"""

from servegate.validation.config import ValidationConfig, ValidationConfigError, load_config
from servegate.validation.reference import Reference, ReferenceError, load_reference
from servegate.validation.report import CheckResult, Measurement, ValidationReport
from servegate.validation.runner import validate
from servegate.validation.signature import Signature, parse_signature

__all__ = [
    "CheckResult", "Measurement", "Reference", "ReferenceError", "Signature", "ValidationConfig",
    "ValidationConfigError", "ValidationReport", "load_config", "load_reference", "parse_signature", "validate",
]
