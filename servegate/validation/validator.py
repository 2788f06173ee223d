"""``validate``: send the reference rows to a canary, check the answers, write the report.

It reads as its steps (the canary is already AVAILABLE; the caller owns it):

1. **send** — the candidate's served signature from the canary's metadata, the
   reference (checked before the canary started, or loaded now), then every
   reference row to the candidate and, when given, to the baseline (production
   in the same canary); then a short steady load on both (:mod:`.traffic`);
2. **table** — one rows table per validated output (prediction, labels,
   golden, derived per-row columns), the task of each output decided;
3. **checks** — each check of :mod:`.checks` plans its figures;
4. **Great Expectations** — the planned expectations run as suites; every
   check is judged from GX's answers and its own figures; ``require`` applied;
5. **report** — plots, ``report.json``, ``report.md``, ``report.html``.

``validate`` raises only for bad input (:class:`ValidationInputError`,
:class:`ConfigError`) and for a canary it cannot reach at all
(:class:`ServingError`); everything the canary does wrong is a failed check.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servegate.errors import ServingError, ValidationInputError
from servegate.serving.client import PredictError, ServingClient
from servegate.validation.checks import CHECKS, CheckContext, judge
from servegate.validation.config import DeployConfig, load_config
from servegate.validation.gx_suite import run_suites
from servegate.validation.outputs import plan_outputs
from servegate.validation.reference import Reference, load_reference
# Imported here rather than lazily in report.write: the report may be drawn in a thread beside the
# caller's own imports, and two threads importing at once can deadlock (servegate.runtime.preload).
from servegate.validation import report_html  # noqa: F401
from servegate.validation.report import CheckResult, ValidationReport
from servegate.validation.send import (GoldenError, RowProgress, address, describe, golden_arrays, make_client,
                                       send)
from servegate.validation.signature import Signature, parse_signature
from servegate.validation.tables import build_outputs, draw_plots
from servegate.validation.traffic import run_load

__all__ = ["validate", "GoldenError", "RowProgress"]


@dataclass
class _Run:
    """One validate() call's state, passed between its steps."""

    config: DeployConfig
    client: ServingClient
    reference: Reference
    served: Signature
    out: Path
    started: float
    timings: dict[str, float] = field(default_factory=dict)
    gx_artifacts: dict[str, str] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.config.deadline_s - (time.perf_counter() - self.started)


def _served_signature(client: ServingClient, candidate: str | int, config: DeployConfig) -> Signature:
    try:
        meta = client.metadata(**address(candidate))
    except PredictError as exc:
        raise ServingError(f"canary for model {client.model_name!r}: cannot read the metadata of "
                           f"{describe(candidate)}: {exc}") from None
    return parse_signature(meta, config.signature_name)


def _check_inputs(config: DeployConfig, goldens: dict, baseline: Any, reference: Reference) -> None:
    if config.parity.enabled and not goldens:
        raise GoldenError("validation config enables the parity check but no golden predictions were given "
                          f"(no column {config.reference.golden_column!r} in {reference.path}, no golden=)")
    if config.regression.enabled and baseline is None:
        raise ValidationInputError("validation config enables the regression check but no baseline version was given")
    if config.distribution.against == "baseline" and baseline is None:
        raise ValidationInputError("validation config field 'distribution.against' is 'baseline' but no baseline "
                                   "version was given")


def _input_mismatch(served: Signature, reference: Reference) -> str | None:
    if set(reference.inputs) == set(served.inputs):
        return None
    return (f"the candidate's inputs {sorted(served.inputs)} do not match the reference's "
            f"{sorted(reference.inputs)}")


def _send_all(run: _Run, names: list[str], candidate, baseline, progress: RowProgress | None):
    cand = send(run.client, run.reference, candidate, names, run.config, run.remaining(), progress)
    run.timings["send_candidate_s"] = cand.seconds
    base = None
    if baseline is not None:
        base = send(run.client, run.reference, baseline, names, run.config, run.remaining(), progress)
        run.timings["send_baseline_s"] = base.seconds
    traffic = None
    if run.config.service_level.enabled:
        addresses = {"candidate": address(candidate)}
        if baseline is not None:
            addresses["baseline"] = address(baseline)
        traffic = run_load(run.client, run.reference, addresses, run.config.service_level, max(run.remaining(), 0.0))
        run.timings["load_s"] = traffic.seconds
    return cand, base, traffic


def _replay_traffic(run: _Run, candidate, baseline, output_names: list[str]):
    """Recorded production traffic replayed to both versions (the shadow check's input), or None."""
    cfg = run.config
    if not cfg.traffic.logs or baseline is None or cfg.shadow.enabled is False or not output_names:
        return None
    from servegate.validation.shadow_logs import load_traffic
    from servegate.validation.shadow_replay import replay

    traffic = load_traffic(cfg.traffic.logs, run.client.model_name, cfg.signature_name, cfg.traffic.max_requests,
                           cfg.traffic.max_age_hours)
    result = replay(run.client, traffic, candidate, baseline, output_names, max(run.remaining(), 0.0),
                    cfg.concurrency)
    run.timings["shadow_replay_s"] = result.seconds
    return result


def _apply_require(results: list[CheckResult], required: list[str]) -> list[CheckResult]:
    """A required check that judged nothing fails, saying why it did not run (a pass must never be a rubber stamp)."""
    out = []
    for r in results:
        if r.name in required and r.status != "failed" and (r.status == "skipped" or not r.judged):
            r = CheckResult(r.name, "failed", f"required by the config (require: [{r.name}]) but not judged: "
                                              f"{r.message}", r.measurements)
        out.append(r)
    return out


def _judge_all(run: _Run, ctx: CheckContext) -> list[CheckResult]:
    plans = [check.plan(ctx) for check in CHECKS]
    planned = [p for plan in plans for p in plan.planned]
    tables = {o.table_name: o.table for o in ctx.outputs if o.table is not None}
    if ctx.traffic is not None:
        import pandas as pd

        samples = ctx.traffic.samples.get("candidate", [])
        tables["requests"] = pd.DataFrame({"latency_ms": [s.latency_ms for s in samples],
                                           "ok": pd.Series([s.ok for s in samples], dtype=bool)})
    began = time.perf_counter()
    outcome = run_suites({k: v for k, v in tables.items() if any(p.table == k for p in planned)}, planned,
                         run.out, data_docs=run.config.data_docs)
    run.timings["gx_s"] = time.perf_counter() - began
    index = {id(p): i for i, p in enumerate(planned)}
    run.gx_artifacts = outcome.artifacts
    return _apply_require([judge(plan, outcome, index) for plan in plans], run.config.require)


def _artifacts(run: _Run, ctx: CheckContext, outputs: list, traffic: Any) -> dict[str, str]:
    """GX results, the plots and, after a shadow replay, its most-changed requests: name -> path."""
    artifacts = dict(run.gx_artifacts)
    artifacts.update(draw_plots(outputs, traffic, run.out))
    if ctx.shadow is not None and ctx.shadow.replayed:
        from servegate.validation.shadow_replay import write_most_changed

        path = run.out / "shadow_most_changed.csv"
        write_most_changed(ctx.shadow, outputs[0].name, path)
        artifacts["shadow_most_changed"] = str(path)
    return artifacts


def validate(endpoint: Any, reference: Reference | str | Path, config: DeployConfig | str | Path | Mapping | None = None,
             *, candidate: str | int = "canary", baseline: str | int | None = None, golden: Any = None,
             production_signature: Any = None, out_dir: str | Path, load_seconds: float | None = None,
             model_name: str | None = None, progress: RowProgress | None = None,
             beside: Callable[[Callable[[], None]], None] | None = None) -> ValidationReport:
    """Validate the candidate served by a canary; see the module docstring for the steps.

    - ``endpoint``: a :class:`ServingClient`, a started runner, or an endpoint
      string (``http://host:port`` REST, ``host:port`` gRPC; then ``model_name=``).
    - ``reference``: a :class:`Reference` from :func:`load_reference`, or a path.
    - ``candidate`` / ``baseline``: a version number or label of the same canary
      (``"canary"`` / ``"stable"``); ``baseline=None``: first deployment.
    - ``golden``: None (the reference's golden column), an array for the first
      validated output, a mapping output name -> array, or column name(s).
    - ``production_signature``: what production serves now; None skips contract.
    - ``load_seconds``: time the canary took to become AVAILABLE (load check).
    - ``progress``: called as answers arrive, with (version or label, rows answered, rows in all).
    - ``beside``: given, and the verdict passed, it is handed the work that draws the plots and
      writes the report's files, to run beside what follows (the report is complete once it ran).
    """
    config = load_config(config)
    run_started = time.perf_counter()
    client = make_client(endpoint, model_name, config)
    served = _served_signature(client, candidate, config)
    if not isinstance(reference, Reference):
        reference = load_reference(reference, served, config)
    run = _Run(config, client, reference, served, Path(out_dir), run_started)
    run.out.mkdir(parents=True, exist_ok=True)
    plans = plan_outputs(config, served)
    goldens = golden_arrays(golden, reference, [p.name for p in plans])
    _check_inputs(config, goldens, baseline, reference)
    mismatch = _input_mismatch(served, reference)
    cand = base = traffic = None
    if mismatch is None:
        cand, base, traffic = _send_all(run, [p.name for p in plans], candidate, baseline, progress)
    outputs = build_outputs(plans, cand, base, reference, goldens, config,
                            None if baseline is None else describe(baseline), mismatch)
    ctx = CheckContext(config, served, outputs, production_signature, load_seconds, baseline is not None, traffic,
                       pass_requests=len(cand.outcomes) if cand else 0,
                       pass_failed=sum(not o.ok for o in cand.outcomes) if cand else 0,
                       input_mismatch=mismatch)
    ctx.shadow = _replay_traffic(run, candidate, baseline, [o.name for o in outputs])
    results = _judge_all(run, ctx)
    primary = outputs[0] if outputs else None
    report = ValidationReport(
        model_name=client.model_name, candidate=describe(candidate),
        baseline=None if baseline is None else describe(baseline), rows=reference.n_rows, checks=results,
        timings=run.timings, task=primary.task if primary else "n/a", transport=client.transport,
        artifacts={}, required=list(config.require),
        unvalidated_outputs=sorted(set(served.outputs) - {o.name for o in outputs}),
        outputs=[{"name": o.name, "task": o.task, "task_reason": o.task_reason,
                  "label_column": o.label_column} for o in outputs])
    finish = functools.partial(_finish_report, run, ctx, outputs, traffic, report)
    if beside is not None and report.verdict == "passed":
        beside(finish)  # a rejected model's report is finished before the rejection is acted on
    else:
        finish()
    return report


def _finish_report(run: _Run, ctx: CheckContext, outputs: list, traffic: Any, report: ValidationReport) -> None:
    """The plots and the report's files (report.json, report.md, report.html): after the verdict."""
    began = time.perf_counter()
    report.artifacts.update(_artifacts(run, ctx, outputs, traffic))
    run.timings["plots_s"] = time.perf_counter() - began
    run.timings["total_s"] = time.perf_counter() - run.started
    report.write(run.out)
