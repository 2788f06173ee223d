"""``validate``: send the reference rows to a canary, check the answers, write the report.

Life cycle of one call (the canary is already AVAILABLE; the caller owns it
and stops it afterwards):

1. read the candidate's served signature from the canary's metadata, and the
   reference (a :class:`Reference` checked before the canary started, or a
   path loaded now);
2. ``load`` and ``contract`` checks (servegate's code);
3. send every reference batch to the candidate (version or label) with the
   configured concurrency over gRPC (REST where there is no gRPC target),
   recording per-request latency; then, when a baseline is given, the same
   rows to the baseline version in the same canary;
4. build the rows and requests tables, plan one GX expectation per judged
   figure, run the suites (results JSON + Data Docs into ``out_dir``);
5. draw the plots, assemble the :class:`ValidationReport`, write
   ``report.json`` and ``report.md`` into ``out_dir``.

``validate`` raises only for bad input (:class:`ValidationInputError`,
:class:`ConfigError`) and for a canary it cannot reach at all
(:class:`ServingError`); everything the canary does wrong is a failed check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from servegate.errors import ServingError, ValidationInputError
from servegate.serving.client import PredictError, RequestOutcome, ServingClient
from servegate.validation import plots
from servegate.validation.checks import metrics
from servegate.validation.checks.contract import breaking_changes
from servegate.validation.config import ValidationConfig, load_config
from servegate.validation.gx_suite import Planned, kl_partition, run_suites
from servegate.validation.reference import Reference, load_reference
from servegate.validation.report import CHECK_ORDER, CheckResult, Measurement, ValidationReport
from servegate.validation.signature import Signature, parse_signature
from servegate.validation.table import Derived, choose_output, derive, detect_task, rows_table

#: progress(who, rows_answered, rows_total), called as answers arrive; ``who`` is
#: the version or label being sent to (candidate, then baseline).
RowProgress = Callable[[str | int, int, int], None]


class GoldenError(ValidationInputError):
    """Golden predictions were given in a form or size that does not fit the reference."""


# ------------------------------------------------------------------ inputs
def make_client(endpoint: Any, model_name: str | None, config: ValidationConfig) -> ServingClient:
    """A :class:`ServingClient` from a client, a runner, or an endpoint string."""
    if isinstance(endpoint, ServingClient):
        return endpoint
    options = dict(transport=config.transport, timeout_s=config.request_timeout_s, signature_name=config.signature_name)
    if hasattr(endpoint, "rest_url") or hasattr(endpoint, "grpc_target"):
        return ServingClient.for_runner(endpoint, model_name, **options)
    if isinstance(endpoint, str):
        if not model_name:
            raise ServingError(f"endpoint {endpoint!r}: pass model_name= to validate a bare endpoint")
        if endpoint.startswith(("http://", "https://")):
            return ServingClient(model_name, rest_url=endpoint, **options)
        return ServingClient(model_name, grpc_target=endpoint.removeprefix("grpc://"), **options)
    raise ServingError(f"cannot reach a canary through a {type(endpoint).__name__}; pass a ServingClient, "
                       "a runner, or an endpoint URL")


def _address(who: str | int) -> dict[str, Any]:
    if isinstance(who, bool):
        raise ValidationInputError(f"candidate/baseline {who!r}: expected a version number or a label")
    if isinstance(who, (int, np.integer)):
        return {"version": int(who)}
    if isinstance(who, str):
        return {"version": int(who)} if who.isdigit() else {"label": who}
    raise ValidationInputError(f"candidate/baseline {who!r}: expected a version number or a label")


def _describe(who: str | int) -> str:
    a = _address(who)
    return f"version {a['version']}" if "version" in a else f"label {a['label']!r}"


def _golden_array(golden: Any, reference: Reference, output: str) -> np.ndarray | None:
    if golden is None:
        array = reference.golden()
    elif isinstance(golden, Mapping):
        if output not in golden:
            raise GoldenError(f"golden predictions: no entry for output {output!r} (entries: {sorted(golden)})")
        array = np.asarray(golden[output])
    elif isinstance(golden, (str, list, tuple)) and not isinstance(golden, np.ndarray) and all(
            isinstance(c, str) for c in ([golden] if isinstance(golden, str) else golden)):
        from servegate.validation.reference import _column_array

        columns = [golden] if isinstance(golden, str) else list(golden)
        array = _column_array(reference, columns, False)
    else:
        array = np.asarray(golden)
    if array is not None and len(array) != reference.n_rows:
        raise GoldenError(f"golden predictions have {len(array)} rows; the reference {reference.path} has "
                          f"{reference.n_rows}")
    return array


# ------------------------------------------------------------------ sending
class _Answers:
    """Every answer of one pass over the reference, placed by row."""

    def __init__(self, n_rows: int):
        self.outputs: np.ndarray | None = None
        self.answered = np.zeros(n_rows, dtype=bool)
        self.outcomes: list[RequestOutcome] = []
        self.n_rows = n_rows
        self.seconds = 0.0

    def place(self, outcome: RequestOutcome, start: int, output: str) -> None:
        self.outcomes.append(outcome)
        if not outcome.ok:
            return
        outputs = outcome.result.outputs  # type: ignore[union-attr]
        if output not in outputs:
            if len(outputs) == 1:  # REST answers a single output without its name
                value = next(iter(outputs.values()))
            else:
                outcome.error = f"answer has no output {output!r} (outputs: {sorted(outputs)})"
                return
        else:
            value = outputs[output]
        value = np.asarray(value, dtype="float64").reshape(outcome.rows, -1)
        if self.outputs is None:
            self.outputs = np.full((self.n_rows, value.shape[1]), np.nan)
        if value.shape[1] != self.outputs.shape[1]:
            outcome.error = f"answer width {value.shape[1]} differs from earlier answers ({self.outputs.shape[1]})"
            return
        self.outputs[start:start + outcome.rows] = value
        self.answered[start:start + outcome.rows] = True
        outcome.result = None  # placed: keep only latency and status per request (bounded memory)


def _send(client: ServingClient, reference: Reference, who: str | int, output: str, config: ValidationConfig,
          deadline_s: float, progress: RowProgress | None = None) -> _Answers:
    answers = _Answers(reference.n_rows)
    starts: list[int] = []

    def batches():
        start = 0
        for batch in reference.batches(config.batch_size):
            starts.append(start)
            start += len(next(iter(batch.values())))
            yield batch

    # Warm-up, as TensorFlow Serving's SavedModel warmup does: the first calls of a
    # fresh server pay one-off costs (graph and kernel initialisation) that would
    # otherwise dominate the latency figures of a small reference. Not measured;
    # a failure here shows up again, measured, in the real pass.
    if config.warmup_requests:
        first = next(iter(reference.batches(config.batch_size)))
        for _ in range(config.warmup_requests):
            try:
                client.predict(first, **_address(who))
            except PredictError:
                break
    began = time.perf_counter()
    done = 0
    for outcome in client.predict_many(batches(), concurrency=config.concurrency, deadline_s=deadline_s,
                                       **_address(who)):
        answers.place(outcome, starts[outcome.index], output)
        done += outcome.rows
        if progress is not None:
            progress(who, done, reference.n_rows)
    answers.seconds = time.perf_counter() - began
    return answers


# ------------------------------------------------------------------ checks
def _load_check(load_seconds: float | None, config: ValidationConfig) -> CheckResult:
    if config.load.enabled is False:
        return CheckResult("load", "skipped", "turned off in the config")
    if load_seconds is None:
        return CheckResult("load", "skipped", "the caller gave no time to AVAILABLE (load_seconds)")
    ok = load_seconds <= config.load.deadline_s
    m = Measurement("seconds_to_available", float(load_seconds), config.load.deadline_s, "<=", ok)
    msg = "AVAILABLE before the deadline" if ok else "AVAILABLE only after the deadline"
    return CheckResult("load", "passed" if ok else "failed", msg, [m])


def _contract_check(served: Signature, production: Any, config: ValidationConfig) -> CheckResult:
    if config.contract.enabled is False:
        return CheckResult("contract", "skipped", "turned off in the config")
    if production is None:
        return CheckResult("contract", "skipped", "no production signature given (first deployment)")
    changes = breaking_changes(parse_signature(production, config.signature_name), served)
    allowed = config.contract.allow_breaking_change
    ok = not changes or allowed
    m = Measurement("breaking_changes", float(len(changes)), None if allowed else 0.0, "<=", ok)
    if not changes:
        msg = "served signature is compatible with production's"
    else:
        msg = ("breaking changes (allowed by config): " if allowed else "breaking changes: ") + "; ".join(changes)
    return CheckResult("contract", "passed" if ok else "failed", msg, [m])


def _plan(table, task: str, labels: bool, golden: np.ndarray | None, base: bool, candidate: Derived,
          baseline_derived: Derived | None, requests, config: ValidationConfig) -> tuple[list[Planned], dict[str, list[Measurement]], dict[str, str]]:
    """The GX expectations to run, figures judged by our code, and reasons for skipped checks."""
    plan: list[Planned] = []
    ours: dict[str, list[Measurement]] = {c: [] for c in CHECK_ORDER}
    skipped: dict[str, str] = {}
    n = len(table)

    # parity
    if config.parity.enabled is False:
        skipped["parity"] = "turned off in the config"
    elif golden is None:
        skipped["parity"] = "no golden predictions (column or golden=)"
    else:
        within = float((table["parity_excess"] <= 0).mean()) if n else 0.0
        plan.append(Planned("parity", "fraction_within_tolerance", "rows", "ExpectColumnValuesToBeBetween",
                            {"column": "parity_excess", "max_value": 0.0, "mostly": config.parity.min_fraction},
                            within, config.parity.min_fraction, ">="))

    # quality and regression
    q, r = config.quality, config.regression
    if q.enabled is False:
        skipped["quality"] = "turned off in the config"
    if r.enabled is False:
        skipped["regression"] = "turned off in the config"
    elif not base:
        skipped["regression"] = "no baseline version served (first deployment); value thresholds still apply"
    if not labels:
        skipped.setdefault("quality", "the reference has no label column")
        skipped.setdefault("regression", "the reference has no label column")
    else:
        label = table["label"].to_numpy()

        def degrade(b: float, higher_is_better: bool) -> float:
            slack = max(r.max_relative_degradation * abs(b), r.max_absolute_degradation)
            return b - slack if higher_is_better else b + slack

        if task == "regression":
            figures = {"mae": (metrics.mae, "abs_error", q.max_mae, 1), "rmse": (metrics.rmse, "sq_error", q.max_rmse, 2)}
            for name, (fn, column, bound, power) in figures.items():
                value = fn(table["prediction"].to_numpy(), label)
                if "quality" not in skipped:
                    if bound is None:
                        ours["quality"].append(Measurement(name, value))
                    else:
                        plan.append(Planned("quality", name, "rows", "ExpectColumnMeanToBeBetween",
                                            {"column": column, "max_value": bound ** power}, value, bound, "<="))
                if "regression" not in skipped:
                    b = fn(table["baseline_prediction"].to_numpy(), label)
                    allowed = degrade(b, False)
                    ours["regression"].append(Measurement(f"baseline_{name}", b))
                    plan.append(Planned("regression", name, "rows", "ExpectColumnMeanToBeBetween",
                                        {"column": column, "max_value": allowed ** power}, value, allowed, "<="))
        else:
            rows = table["row"].to_numpy()

            def auc_of(d: Derived) -> float:
                # AUC is ranking, not a per-row property: GX has no expectation for it.
                score = d.score[rows]
                return metrics.binary_auc(score, label) if score.ndim == 1 else metrics.multiclass_auc(score, label)

            acc = metrics.accuracy(table["prediction"].to_numpy(), label)
            auc = auc_of(candidate)
            if "quality" not in skipped:
                if q.min_accuracy is None:
                    ours["quality"].append(Measurement("accuracy", acc))
                else:
                    plan.append(Planned("quality", "accuracy", "rows", "ExpectColumnMeanToBeBetween",
                                        {"column": "correct", "min_value": q.min_accuracy}, acc, q.min_accuracy, ">="))
                passed = q.min_auc is None or bool(np.isfinite(auc) and auc >= q.min_auc)
                ours["quality"].append(Measurement("auc", auc, q.min_auc, ">=", passed))
            if "regression" not in skipped and baseline_derived is not None:
                b_acc = metrics.accuracy(table["baseline_prediction"].to_numpy(), label)
                allowed = degrade(b_acc, True)
                ours["regression"].append(Measurement("baseline_accuracy", b_acc))
                plan.append(Planned("regression", "accuracy", "rows", "ExpectColumnMeanToBeBetween",
                                    {"column": "correct", "min_value": allowed}, acc, allowed, ">="))
                b_auc = auc_of(baseline_derived)
                ours["regression"].append(Measurement("baseline_auc", b_auc))
                if np.isfinite(b_auc):
                    allowed_auc = degrade(b_auc, True)
                    ours["regression"].append(Measurement("auc", auc, allowed_auc, ">=",
                                                          bool(np.isfinite(auc) and auc >= allowed_auc)))

    # sanity
    s = config.sanity
    if not s.enabled:
        skipped["sanity"] = "turned off in the config"
    else:
        nonfinite = float((~table["output_finite"]).sum()) if n else 0.0
        plan.append(Planned("sanity", "non_finite_rows", "rows", "ExpectColumnValuesToBeInSet",
                            {"column": "output_finite", "value_set": [True]}, nonfinite, 0.0, "<="))
        if s.min_value is not None:
            plan.append(Planned("sanity", "min_output", "rows", "ExpectColumnValuesToBeBetween",
                                {"column": "output_min", "min_value": s.min_value},
                                float(np.nanmin(table["output_min"])) if n and table["output_min"].notna().any() else None,
                                s.min_value, ">="))
        if s.max_value is not None:
            plan.append(Planned("sanity", "max_output", "rows", "ExpectColumnValuesToBeBetween",
                                {"column": "output_max", "max_value": s.max_value},
                                float(np.nanmax(table["output_max"])) if n and table["output_max"].notna().any() else None,
                                s.max_value, "<="))
        if s.max_kl_divergence is not None:
            expected = table["golden_prediction"] if "golden_prediction" in table else (
                table["label"] if "label" in table else None)
            partition = kl_partition(expected.to_numpy(), s.bins) if expected is not None else None
            if partition is not None:
                plan.append(Planned("sanity", "kl_divergence", "rows", "ExpectColumnKLDivergenceToBeLessThan",
                                    {"column": "prediction", "partition_object": partition,
                                     "threshold": s.max_kl_divergence},
                                    None, s.max_kl_divergence, "<="))

    # service level
    sl = config.service_level
    if not sl.enabled:
        skipped["service_level"] = "turned off in the config"
    else:
        lat = requests["latency_ms"].to_numpy()
        for q_, bound in ((50, sl.max_p50_ms), (95, sl.max_p95_ms), (99, sl.max_p99_ms)):
            # inverted_cdf: the smallest latency with at least q% of requests at or below it,
            # exactly what the GX expectation (values <= bound, mostly=q%) asserts.
            value = float(np.percentile(lat, q_, method="inverted_cdf")) if len(lat) else None
            if bound is None:
                ours["service_level"].append(Measurement(f"p{q_}_ms", value))
            else:
                plan.append(Planned("service_level", f"p{q_}_ms", "requests", "ExpectColumnValuesToBeBetween",
                                    {"column": "latency_ms", "max_value": bound, "mostly": q_ / 100.0},
                                    value, bound, "<="))
        error_rate = float((~requests["ok"]).mean()) if len(requests) else 0.0
        plan.append(Planned("service_level", "error_rate", "requests", "ExpectColumnValuesToBeInSet",
                            {"column": "ok", "value_set": [True], "mostly": 1.0 - sl.max_error_rate},
                            error_rate, sl.max_error_rate, "<="))
    return plan, ours, skipped


# The order figures are listed in, within a check; others follow in the order measured.
METRIC_ORDER = ("fraction_within_tolerance", "baseline_mae", "mae", "baseline_rmse", "rmse", "baseline_accuracy",
                "accuracy", "baseline_auc", "auc", "non_finite_rows", "min_output", "max_output", "kl_divergence",
                "p50_ms", "p95_ms", "p99_ms", "error_rate")


def _data_check(name: str, planned: list[tuple[Planned, bool, Any, str | None]], ours: list[Measurement],
                skipped: str | None, messages: list[str]) -> CheckResult:
    measurements = list(ours)
    for p, ok, observed, error in planned:
        value = p.value
        if value is None and isinstance(observed, (int, float)):
            value = float(observed)
        measurements.append(Measurement(p.metric, value, p.threshold, p.comparison, ok, "gx", p.expectation))
        if error:
            messages.append(f"{p.metric}: GX could not evaluate it ({error.splitlines()[0][:200]})")
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    measurements.sort(key=lambda m: rank.get(m.metric, len(rank)))
    if skipped and not planned and not any(m.threshold is not None for m in ours):
        return CheckResult(name, "skipped", skipped, measurements)
    failed = [m for m in measurements if m.threshold is not None and not m.passed]
    if failed:
        text = "; ".join(m.describe() for m in failed)
        return CheckResult(name, "failed", "; ".join([f"out of bounds: {text}"] + messages), measurements)
    text = ", ".join(m.describe() for m in measurements)
    return CheckResult(name, "passed", "; ".join([text] + messages + ([skipped] if skipped else [])), measurements)


# ------------------------------------------------------------------ entry point
def validate(endpoint: Any, reference: Reference | str | Path, config: ValidationConfig | str | Path | Mapping | None = None,
             *, candidate: str | int = "canary", baseline: str | int | None = None, golden: Any = None,
             production_signature: Any = None, out_dir: str | Path, load_seconds: float | None = None,
             model_name: str | None = None, progress: RowProgress | None = None) -> ValidationReport:
    """Validate the candidate served by a canary; see the module docstring for the life cycle.

    - ``endpoint``: a :class:`ServingClient`, a started runner (``rest_url``,
      ``grpc_target``, ``spec.model_name``), or an endpoint string
      (``http://host:port`` for REST, ``host:port`` or ``grpc://host:port``
      for gRPC; then ``model_name=`` is required).
    - ``reference``: a :class:`Reference` from :func:`load_reference` (checked
      before the canary started), or a path, loaded against the served signature.
    - ``candidate`` / ``baseline``: a version number or a version label of the
      same canary (``"canary"`` / ``"stable"``); ``baseline=None`` skips regression.
    - ``golden``: None (the reference's golden column, if any), an array with
      one row per reference row, a mapping output name -> array (export's
      ``golden_predictions``), or reference column name(s).
    - ``production_signature``: what production serves now (anything
      :func:`parse_signature` reads); None skips the contract check.
    - ``load_seconds``: time the canary took to become AVAILABLE (load check).
    - ``progress``: called as answers arrive, with (version or label, rows answered, rows in all).

    Writes report.json, report.md, plots, GX results and Data Docs into ``out_dir``.
    """
    started = time.perf_counter()
    config = load_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    client = make_client(endpoint, model_name, config)
    timings: dict[str, float] = {}

    try:
        meta = client.metadata(**_address(candidate))
    except PredictError as exc:
        raise ServingError(f"canary for model {client.model_name!r}: cannot read the metadata of "
                           f"{_describe(candidate)}: {exc}") from None
    served = parse_signature(meta, config.signature_name)
    if not isinstance(reference, Reference):
        reference = load_reference(reference, served, config)
    output = choose_output(served, config)
    golden_array = _golden_array(golden, reference, output)
    if config.parity.enabled and golden_array is None:
        raise GoldenError("validation config enables the parity check but no golden predictions were given "
                          f"(no column {config.reference.golden_column!r} in {reference.path}, no golden=)")
    if config.regression.enabled and baseline is None:
        raise ValidationInputError("validation config enables the regression check but no baseline version was given")

    checks: dict[str, CheckResult] = {"load": _load_check(load_seconds, config),
                                      "contract": _contract_check(served, production_signature, config)}
    missing = sorted(set(reference.inputs) - set(served.inputs))
    extra = sorted(set(served.inputs) - set(reference.inputs))
    if missing or extra:
        why = (f"not run: the candidate's inputs {sorted(served.inputs)} do not match the reference's "
               f"{sorted(reference.inputs)}")
        for name in CHECK_ORDER[2:]:
            checks[name] = CheckResult(name, "failed", why)
        return _finish(client, reference, candidate, baseline, checks, timings, started, out, "n/a", {})

    remaining = config.deadline_s - (time.perf_counter() - started)
    cand = _send(client, reference, candidate, output, config, remaining, progress)
    timings["send_candidate_s"] = cand.seconds
    base = None
    if baseline is not None:
        remaining = config.deadline_s - (time.perf_counter() - started)
        base = _send(client, reference, baseline, output, config, remaining, progress)
        timings["send_baseline_s"] = base.seconds

    import pandas as pd

    requests = pd.DataFrame({"latency_ms": [o.latency_s * 1000.0 for o in cand.outcomes],
                             "ok": [o.ok for o in cand.outcomes], "rows": [o.rows for o in cand.outcomes]})
    errors = sorted({o.error for o in cand.outcomes if o.error})
    width = cand.outputs.shape[1] if cand.outputs is not None else 1
    task = detect_task(config, width)
    artifacts: dict[str, str] = {}
    cand_d: Derived | None = None
    base_d: Derived | None = None
    if cand.outputs is None:
        why = f"the candidate answered no request: {errors[0] if errors else 'no requests sent'}"
        for name in ("parity", "quality", "regression", "sanity"):
            checks[name] = CheckResult(name, "failed", why)
        table = None
        answered = cand.answered
    else:
        cand_d = derive(cand.outputs, task, config.decision_threshold)
        answered = cand.answered.copy()
        if base is not None:
            if base.outputs is None:
                base_errors = sorted({o.error for o in base.outcomes if o.error})
                checks["regression"] = CheckResult("regression", "failed", f"the baseline {_describe(baseline)} "
                                                   f"answered no request: {base_errors[:1]}")
            else:
                base_d = derive(base.outputs, task, config.decision_threshold)
                answered &= base.answered
        labels = reference.labels()
        table = rows_table(cand_d, answered, labels, golden_array, base_d, task, config)
    began = time.perf_counter()
    plan, ours, skipped = _plan(
        table if table is not None else pd.DataFrame({"output_finite": pd.Series([], dtype=bool)}),
        task, table is not None and "label" in table, golden_array if table is not None else None,
        base_d is not None, cand_d, base_d, requests, config)
    if table is None:
        plan = [p for p in plan if p.table == "requests"]
    outcome = run_suites({"rows": table, "requests": requests} if table is not None else {"requests": requests},
                         plan, out)
    artifacts.update(outcome.artifacts)
    timings["gx_s"] = time.perf_counter() - began
    for name in ("parity", "quality", "regression", "sanity", "service_level"):
        if name in checks:
            continue
        mine = [(p, outcome.success.get(i, False), outcome.observed.get(i), outcome.exceptions.get(i))
                for i, p in enumerate(plan) if p.check == name]
        messages: list[str] = []
        if name == "service_level":
            messages.append(f"{len(requests)} requests of up to {config.batch_size} rows, concurrency "
                            f"{config.concurrency}, {reference.n_rows / max(cand.seconds, 1e-9):.0f} rows/s "
                            f"(after {config.warmup_requests} warm-up request(s), not measured)")
            if errors:
                messages.append(f"first error: {errors[0][:300]}")
        unanswered = int((~answered).sum())
        if name != "service_level" and unanswered:
            messages.append(f"{unanswered} row(s) left out: their request failed")
        checks[name] = _data_check(name, mine, ours.get(name, []), skipped.get(name), messages)

    began = time.perf_counter()
    artifacts.update(_draw(table, task, requests, out))
    timings["plots_s"] = time.perf_counter() - began
    return _finish(client, reference, candidate, baseline, checks, timings, started, out, task, artifacts,
                   transport=client.transport)


def _draw(table, task: str, requests, out: Path) -> dict[str, str]:
    drawn: dict[str, str] = {}
    if table is not None and len(table):
        expected_col = "label" if "label" in table else ("golden_prediction" if "golden_prediction" in table else None)
        if expected_col:
            what = "label" if expected_col == "label" else "golden prediction"
            pred = table["prediction"].to_numpy()
            expected = table[expected_col].to_numpy()
            if task == "regression":
                drawn["plot_predicted_vs_expected"] = str(plots.predicted_vs_expected(
                    pred, expected, what, out / "predicted_vs_expected.png"))
                drawn["plot_residuals"] = str(plots.residuals(pred, expected, what, out / "residuals.png"))
            else:
                score = table["score"].to_numpy() if "score" in table else pred
                drawn["plot_predicted_vs_expected"] = str(plots.predicted_vs_expected(
                    score, expected, what, out / "predicted_vs_expected.png"))
                drawn["plot_confusion_matrix"] = str(plots.confusion_matrix(pred, expected, out / "confusion_matrix.png"))
    drawn["plot_latency"] = str(plots.latency(requests["latency_ms"].to_numpy(), out / "latency.png"))
    return drawn


def _finish(client: ServingClient, reference: Reference, candidate, baseline, checks: dict[str, CheckResult],
            timings: dict[str, float], started: float, out: Path, task: str, artifacts: dict[str, str],
            transport: str | None = None) -> ValidationReport:
    timings["total_s"] = time.perf_counter() - started
    report = ValidationReport(
        model_name=client.model_name, candidate=_describe(candidate),
        baseline=None if baseline is None else _describe(baseline), rows=reference.n_rows,
        checks=[checks[name] for name in CHECK_ORDER], timings=timings, task=task,
        transport=transport or client.transport, artifacts=artifacts)
    report.write(out)
    return report
