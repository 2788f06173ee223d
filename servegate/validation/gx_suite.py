"""Great Expectations as the engine: the checks as expectation suites over two tables.

Tables (pandas, built by :mod:`servegate.validation.rows`):

- ``rows`` (``rows_1``, ... for further validated outputs): one row per answered reference row — the prediction, the expected
  values (labels, golden) and derived columns (``abs_error``, ``sq_error``,
  ``correct``, ``parity_excess``, ``output_finite``, ``output_min/max`` and
  the baseline's ``baseline_*`` twins);
- ``requests``: one row per request of the candidate's steady load — ``latency_ms``, ``ok``.

Prediction drift (:mod:`.checks.distribution`) is a KS test in servegate's code:
GX 1.x has no two-sample test expectation.

Each judged figure becomes one GX expectation carrying ``meta = {"check",
"metric"}``; :func:`run_suites` runs both suites in an ephemeral GX context
whose Data Docs site is a folder in the report directory, keeps GX's
validation results as JSON there, and returns each expectation's success.

How each figure is phrased in GX's own expectations:

- parity: ``expect_column_values_to_be_between(parity_excess, max 0, mostly=f)``
  where ``parity_excess = max(|y - g| - (atol + rtol |g|))`` over the row's
  outputs — GX's ``mostly`` *is* "for at least a fraction of rows";
- MAE / RMSE / accuracy (and their regression twins, with the threshold taken
  from the baseline): ``expect_column_mean_to_be_between`` on ``abs_error``,
  ``sq_error`` (bound squared) and ``correct``;
- NaN/Inf: ``expect_column_values_to_be_in_set(output_finite, [True])``;
  range: ``expect_column_values_to_be_between`` on ``output_min``/``output_max``;
- latency pXX <= T: ``expect_column_values_to_be_between(latency_ms, max T,
  mostly=XX/100)``, the same statement as a percentile bound (GX 1.24's
  ``expect_column_quantile_values_to_be_between`` stores numpy booleans its
  own result store cannot serialise, so it is not used); error rate:
  ``expect_column_values_to_be_in_set(ok, [True], mostly=1 - max_rate)``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SITE = "servegate_report"


@dataclass
class Planned:
    """One figure to be judged by one GX expectation (built lazily: GX imports slowly)."""

    check: str
    metric: str
    table: str  # "rows" | "requests"
    expectation: str  # GX class name in great_expectations.expectations
    kwargs: dict[str, Any]
    value: float | None  # the figure as servegate measures it, for the report
    threshold: float | None
    comparison: str = "<="
    output: str | None = None  # the validated output, named when several are


@dataclass
class SuiteOutcome:
    success: dict[int, bool]  # index into the planned list -> success
    observed: dict[int, Any]
    exceptions: dict[int, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


def _quiet_gx() -> None:
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_suites(tables: dict[str, pd.DataFrame], planned: list[Planned], out_dir: Path,
               data_docs: bool = False) -> SuiteOutcome:
    """Run the planned expectations on their tables; write GX results (and, when asked, Data Docs) under ``out_dir``.

    GX's Data Docs site loads its CSS and JavaScript from CDNs and weighs
    megabytes, so by default it is not built: ``report.html`` (self-contained)
    is the page a person opens.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                             ProgressBarsConfig)

    _quiet_gx()
    out_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = out_dir / "data_docs"
    # In-memory stores, no progress bars, and no default docs site: GX's default
    # ephemeral context makes a temp directory per context that nobody removes.
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False)))
    if data_docs:
        context.add_data_docs_site(site_name=SITE, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    source = context.data_sources.add_pandas("canary")
    outcome = SuiteOutcome({}, {})
    for table_name, frame in tables.items():
        mine = [(i, p) for i, p in enumerate(planned) if p.table == table_name]
        if not mine:
            continue
        asset = source.add_dataframe_asset(table_name)
        batch_definition = asset.add_batch_definition_whole_dataframe(f"{table_name}_all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"servegate_{table_name}"))
        for i, p in mine:
            expectation_class = getattr(gxe, p.expectation)
            meta = {"check": p.check, "metric": p.metric, "id": i, **({"output": p.output} if p.output else {})}
            suite.add_expectation(expectation_class(**p.kwargs, meta=meta))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"servegate_{table_name}", data=batch_definition, suite=suite))
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
        for r in result.results:
            i = int(r.expectation_config.meta["id"])
            outcome.success[i] = bool(r.success)
            outcome.observed[i] = r.result.get("observed_value", r.result.get("unexpected_percent"))
            raised = r.exception_info.get("raised_exception") if isinstance(r.exception_info, dict) else None
            if raised:
                outcome.exceptions[i] = str(r.exception_info.get("exception_message"))
        results_path = out_dir / f"gx_results_{table_name}.json"
        results_path.write_text(json.dumps(result.to_json_dict(), indent=2, default=str))
        outcome.artifacts[f"gx_results_{table_name}"] = str(results_path)
    if data_docs:
        context.build_data_docs(site_names=[SITE])
        index = docs_dir / "index.html"
        if index.is_file():
            outcome.artifacts["data_docs"] = str(index)
    return outcome
