"""validate() against a real canary (bundled server, process runner) with real GX and real TF models.

One canary serves every variant (see conftest.py); each test validates one
of them and checks that the verdict fails for the right reason, named in the report.
"""

from __future__ import annotations

import json

import pytest

from servegate.errors import ConfigError, ServingError, ValidationInputError
from servegate.validation import load_config, load_reference, validate
from tests.validation import models
from tests.validation.conftest import VERSION

# 256 rows -> 4 requests per pass; a steady load of 100 requests per version
FAST = {"batch_size": 64, "service_level": {"requests": 100}}


@pytest.fixture(scope="module")
def reference(reference_parquet):
    """Checked before any canary is touched, as the deploy flow does."""
    return load_reference(reference_parquet, models.SIGNATURE, load_config(FAST))


def _run(canary, reference, tmp_path, candidate, config=None, **kwargs):
    runner, load_seconds = canary
    merged = {**FAST, **(config or {})}
    merged["service_level"] = {**FAST["service_level"], **(config or {}).get("service_level", {})}
    return validate(runner, reference, load_config(merged), candidate=candidate,
                    production_signature=models.SIGNATURE, load_seconds=load_seconds,
                    out_dir=tmp_path / "report", **kwargs)


def test_a_good_model_passes_with_every_artifact(canary, reference, tmp_path):
    report = _run(canary, reference, tmp_path, VERSION["good"], {"quality": {"max_mae": 0.2, "max_rmse": 0.25}})
    assert report.verdict == "passed", report.to_markdown()
    status = {c.name: c.status for c in report.checks}
    assert status == {"load": "passed", "contract": "passed", "parity": "passed", "quality": "passed",
                      "regression": "skipped", "sanity": "passed", "distribution": "passed",
                      "service_level": "passed", "shadow": "skipped"}
    assert "no baseline" in report.check("regression").message
    quality = {m.metric: m for m in report.check("quality").measurements}
    assert quality["mae"].engine == "gx" and 0 < quality["mae"].value < 0.2
    assert report.transport == "grpc" and report.rows == 256
    out = tmp_path / "report"
    for name in ("report.json", "report.md", "report.html", "predicted_vs_expected.png", "residuals.png",
                 "prediction_distribution.png", "latency.png", "gx_results_rows.json", "gx_results_requests.json"):
        assert (out / name).is_file(), name
    assert not (out / "data_docs").exists()  # GX's CDN-bound site only with data_docs: true
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    gx = json.loads((out / "gx_results_rows.json").read_text())
    assert gx["success"] is True and len(gx["results"]) >= 4
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"] == "passed"
    assert data["outputs"] == [{"name": "prediction", "task": "regression", "label_column": "label",
                                "task_reason": "one value per row and labels are not all 0/1"}]
    assert [g["check"] for g in data["gates_not_run"]] == ["regression", "shadow"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    assert len(html) < 1_000_000


def test_a_model_that_differs_from_its_golden_predictions_fails_parity(canary, reference, tmp_path):
    report = _run(canary, reference, tmp_path, VERSION["worse"])
    assert report.verdict == "failed" and "parity" in report.failed_checks
    parity = report.check("parity").measurements[0]
    assert parity.value == 0.0 and parity.threshold == 0.99 and parity.expectation == "ExpectColumnValuesToBeBetween"
    assert "fraction_within_tolerance" in report.check("parity").message


def test_a_worse_model_fails_regression_against_the_stable_version(canary, reference, tmp_path):
    report = _run(canary, reference, tmp_path, "canary", {"parity": {"enabled": False}}, baseline="stable")
    assert report.failed_checks == ["regression"], report.to_markdown()
    figures = {m.metric: m for m in report.check("regression").measurements}
    assert figures["mae"].value > figures["baseline_mae"].value * 1.05
    assert figures["mae"].threshold == pytest.approx(figures["baseline_mae"].value * 1.05)
    assert report.candidate == "label 'canary'" and report.baseline == "label 'stable'"
    # The same rows against the good version as baseline of itself pass.
    same = _run(canary, reference, tmp_path / "same", "stable", baseline=VERSION["good"])
    assert same.check("regression").status == "passed"


def test_a_model_emitting_nan_fails_sanity(canary, reference, tmp_path):
    report = _run(canary, reference, tmp_path, VERSION["nan"], {"parity": {"enabled": False}})
    assert report.failed_checks == ["sanity"], report.to_markdown()
    nonfinite = report.check("sanity").measurements[0]
    assert nonfinite.metric == "non_finite_rows" and nonfinite.value > 0 and not nonfinite.passed


def test_a_changed_signature_fails_contract_unless_allowed(canary, reference, tmp_path):
    report = _run(canary, reference, tmp_path, VERSION["renamed"])
    assert report.failed_checks == ["contract"], report.to_markdown()
    assert "output 'prediction' removed" in report.check("contract").message
    allowed = _run(canary, reference, tmp_path / "allowed", VERSION["renamed"],
                   {"contract": {"allow_breaking_change": True}})
    assert allowed.verdict == "passed" and "allowed by config" in allowed.check("contract").message


def test_a_slow_model_fails_the_latency_threshold(canary, reference, tmp_path):
    report = _run(canary, reference, tmp_path, VERSION["slow"],
                  {"service_level": {"max_p95_ms": 150, "requests": 8, "min_requests": 8}})
    assert report.failed_checks == ["service_level"], report.to_markdown()
    p95 = {m.metric: m for m in report.check("service_level").measurements}["p95_ms"]
    assert p95.value >= models.SLOW_SECONDS * 1000 and p95.threshold == 150 and not p95.passed


def test_rest_transport_gives_the_same_verdict(canary, reference, tmp_path):
    report = _run(canary, reference, tmp_path, VERSION["good"], {"transport": "rest"})
    assert report.transport == "rest" and report.verdict == "passed", report.to_markdown()


def test_an_unknown_candidate_is_a_serving_error(canary, reference, tmp_path):
    with pytest.raises(ServingError, match="cannot read the metadata of version 99"):
        _run(canary, reference, tmp_path, 99)


def test_bad_inputs_to_validate_are_named(canary, reference, reference_parquet, tmp_path):
    with pytest.raises(ValidationInputError, match="regression check but no baseline"):
        _run(canary, reference, tmp_path, VERSION["good"], {"regression": {"enabled": True}})
    with pytest.raises(ValidationInputError, match="golden predictions for output 'prediction' have 3 rows"):
        _run(canary, reference, tmp_path, VERSION["good"], golden=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match=r"field 'output': 'proba' is not an output of the model \(outputs: prediction\)"):
        _run(canary, reference, tmp_path, VERSION["good"], {"output": "proba"})


def test_a_classifier_gets_accuracy_auc_and_a_confusion_matrix(canary, tmp_path):
    a = models.classifier_reference()
    path = tmp_path / "classes.parquet"
    import pandas as pd

    pd.DataFrame({"features": list(a["features"]), "label": a["label"], "golden": list(a["golden"])}).to_parquet(path)
    config = load_config({**FAST, "quality": {"min_accuracy": 0.8, "min_auc": 0.9}})
    signature = {"inputs": models.SIGNATURE["inputs"],
                 "outputs": {"probabilities": {"dtype": "float32", "shape": [None, 3]}}}
    runner, _ = canary
    report = validate(runner, load_reference(path, signature, config), config, candidate=VERSION["classifier"],
                      baseline=VERSION["classifier"], out_dir=tmp_path / "report")
    assert report.task == "classification" and report.verdict == "passed", report.to_markdown()
    quality = {m.metric: m for m in report.check("quality").measurements}
    assert 0.8 <= quality["accuracy"].value <= 0.95 and quality["accuracy"].engine == "gx"
    assert quality["auc"].value > 0.9 and quality["auc"].engine == "servegate"
    assert report.check("parity").status == "passed"
    assert {"accuracy", "auc", "baseline_accuracy"} <= {m.metric for m in report.check("regression").measurements}
    assert (tmp_path / "report" / "confusion_matrix.png").is_file()
    strict = validate(runner, load_reference(path, signature, config),
                      load_config({**FAST, "quality": {"min_auc": 0.999}}), candidate=VERSION["classifier"],
                      out_dir=tmp_path / "strict")
    assert strict.failed_checks == ["quality"] and "auc" in strict.check("quality").message


def test_outputs_outside_the_configured_range_fail_sanity(canary, reference_parquet, tmp_path):
    # The reference as a path: loaded against the canary's own signature.
    report = _run(canary, reference_parquet, tmp_path, VERSION["good"], {"sanity": {"max_value": 1.0}})
    assert report.failed_checks == ["sanity"], report.to_markdown()
    top = {m.metric: m for m in report.check("sanity").measurements}["max_output"]
    assert top.value > 1.0 and top.expectation == "ExpectColumnValuesToBeBetween" and not top.passed


def test_a_reference_for_other_inputs_fails_every_data_check(canary, tmp_path, reference_arrays):
    import pandas as pd

    path = tmp_path / "other.parquet"
    pd.DataFrame({"pixels": list(reference_arrays["features"])}).to_parquet(path)
    other = {"inputs": {"pixels": {"dtype": "float32", "shape": [None, 4]}}}
    report = _run(canary, load_reference(path, other), tmp_path, VERSION["good"])
    assert set(report.failed_checks) == {"parity", "quality", "regression", "sanity", "distribution", "service_level"}
    assert "do not match the reference's ['pixels']" in report.check("sanity").message


def test_progress_reports_rows_answered_for_candidate_then_baseline(canary, reference, tmp_path):
    calls: list[tuple] = []
    _run(canary, reference, tmp_path, VERSION["good"], {"batch_size": 64},
         baseline=VERSION["worse"], progress=lambda who, done, total: calls.append((who, done, total)))
    by_who = {}
    for who, done, total in calls:
        assert total == 256
        by_who.setdefault(who, []).append(done)
    assert list(by_who) == [VERSION["good"], VERSION["worse"]]  # candidate first, then baseline
    for counts in by_who.values():
        assert counts == sorted(counts) and counts[-1] == 256 and len(counts) == 256 // 64
