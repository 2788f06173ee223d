"""Validating a canary: reference data, config, checks as a Great Expectations suite, report, plots.

The entry points (see docs/ARCHITECTURE.md, "validation")::

    from servegate.validation import validate, load_config, load_reference, DeployConfig, ValidationReport
    config = load_config("validation.yaml")             # or None for the defaults
    check_config_against_signature(config, signature)   # before anything starts (no TensorFlow)
    reference = load_reference("ref.parquet", signature, config)   # before the canary starts
    report = validate(runner_or_client, reference, config, candidate="canary", baseline="stable",
                      production_signature=prod_sig, load_seconds=t, out_dir=run_dir)
    report.verdict, report.checks, report.to_json(), report.to_markdown()

The names are imported on first use (PEP 562): ``validate`` pulls in SciPy,
pandas, matplotlib and Great Expectations (seconds), which a caller that only
checks a config file (``servegate deploy``'s up-front input checks) must not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the submodule that defines it
_EXPORTS = {
    "DeployConfig": "config", "ValidationConfigError": "config", "load_config": "config",
    "Reference": "reference", "ReferenceError": "reference", "load_reference": "reference",
    "CheckResult": "report", "Measurement": "report", "ValidationReport": "report",
    "validate": "validator", "check_config_against_signature": "outputs",
    "Signature": "signature", "parse_signature": "signature",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use (fast CLI start)
    from servegate.validation.config import DeployConfig, ValidationConfigError, load_config
    from servegate.validation.reference import Reference, ReferenceError, load_reference
    from servegate.validation.report import CheckResult, Measurement, ValidationReport
    from servegate.validation.outputs import check_config_against_signature
    from servegate.validation.validator import validate
    from servegate.validation.signature import Signature, parse_signature


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'servegate.validation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"servegate.validation.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def preload() -> None:
    """Import what :func:`validate` needs (SciPy, pandas, matplotlib, Great Expectations).

    Safe from a background thread: the deploy pipeline calls it while the main
    thread only waits for the canary to boot, so that validation starts warm.
    """
    importlib.import_module("servegate.validation.validator")
    importlib.import_module("great_expectations.expectations")
    importlib.import_module("great_expectations.data_context.types.base")
    from servegate.validation import plots

    plots._pyplot()  # selects the Agg backend first, as every plot does
