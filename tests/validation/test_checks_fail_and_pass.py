"""Every check made to FAIL and to PASS by a real tiny TF model in the shared canary (issue 11).

load, contract, parity, quality, regression, sanity, distribution, service level:
each has a failing and a passing case here or in test_validate_canary.py
(contract: renamed output; sanity: NaN and range; parity: shifted answers).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from servegate.errors import ConfigError
from servegate.validation import ValidationConfigError, load_config, load_reference, validate
from tests.validation import models
from tests.validation.conftest import VERSION

LOAD = {"requests": 60}


@pytest.fixture(scope="module")
def unlabelled_path(tmp_path_factory, reference_arrays):
    path = tmp_path_factory.mktemp("unlabelled") / "inputs_only.parquet"
    pd.DataFrame({"features": list(reference_arrays["features"])}).to_parquet(path)
    return path


def _validate(canary, path, signature, config, candidate, tmp_path, **kwargs):
    runner, load_seconds = canary
    config = load_config({"batch_size": 64, **config, "service_level": {**LOAD, **config.get("service_level", {})}})
    return validate(runner, load_reference(path, signature, config), config, candidate=candidate,
                    out_dir=tmp_path / "report", load_seconds=kwargs.pop("load_seconds", load_seconds), **kwargs)


# ----------------------------------------------------------------- quality: a sigmoid classifier
def test_a_chance_level_sigmoid_classifier_with_min_accuracy_is_rejected(canary, sigmoid_path, tmp_path):
    report = _validate(canary, sigmoid_path, models.SIGMOID_SIGNATURE, {"quality": {"min_accuracy": 0.8}},
                       VERSION["chance"], tmp_path, golden=None)
    assert report.task == "classification"
    assert "sigmoid" in report.outputs[0]["task_reason"]
    assert "quality" in report.failed_checks, report.to_markdown()
    accuracy = {m.metric: m for m in report.check("quality").measurements}["accuracy"]
    assert accuracy.value < 0.7 and not accuracy.passed and accuracy.engine == "gx"
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["outputs"][0]["name"] == "probability" and data["outputs"][0]["task"] == "classification"


def test_a_good_sigmoid_classifier_passes_min_accuracy_and_auc(canary, sigmoid_path, tmp_path):
    report = _validate(canary, sigmoid_path, models.SIGMOID_SIGNATURE,
                       {"quality": {"min_accuracy": 0.8, "min_auc": 0.9}, "parity": {"enabled": False}},
                       VERSION["sigmoid"], tmp_path)
    assert report.verdict == "passed", report.to_markdown()
    quality = {m.metric: m for m in report.check("quality").measurements}
    assert quality["accuracy"].value >= 0.9 and quality["auc"].value >= 0.9
    assert (tmp_path / "report" / "confusion_matrix.png").is_file()


def test_a_regression_threshold_on_a_sigmoid_classifier_is_a_config_error(canary, sigmoid_path, tmp_path):
    with pytest.raises(ConfigError, match=r"field 'quality.max_mae': judges regression, but output 'probability' "
                                          r"is classification \(one output in \[0, 1\] and 0/1 labels"):
        _validate(canary, sigmoid_path, models.SIGMOID_SIGNATURE, {"quality": {"max_mae": 0.3}},
                  VERSION["sigmoid"], tmp_path)


# ----------------------------------------------------------------- distribution: drift against production
def test_outputs_shifted_far_from_production_are_rejected_without_labels(canary, unlabelled_path, tmp_path):
    report = _validate(canary, unlabelled_path, models.SIGNATURE, {"parity": {"enabled": False}},
                       VERSION["shifted"], tmp_path, baseline=VERSION["good"])
    assert report.verdict == "failed" and report.failed_checks == ["distribution"], report.to_markdown()
    figures = {m.metric: m for m in report.check("distribution").measurements}
    assert figures["ks_statistic"].value > 0.35 and figures["mean_shift_sd"].value > 1.0
    assert "production's predictions" in report.check("distribution").message
    assert (tmp_path / "report" / "prediction_distribution.png").is_file()


def test_the_same_model_as_production_passes_distribution(canary, unlabelled_path, tmp_path):
    report = _validate(canary, unlabelled_path, models.SIGNATURE, {"parity": {"enabled": False}},
                       VERSION["worse"], tmp_path, baseline=VERSION["good"])
    assert report.check("distribution").status == "passed", report.to_markdown()
    assert {m.metric: m for m in report.check("distribution").measurements}["ks_statistic"].value < 0.2


def test_distribution_against_labels_fails_a_far_shift_and_is_skipped_without_anything(
        canary, reference_parquet, unlabelled_path, tmp_path):
    against_labels = _validate(canary, reference_parquet, models.SIGNATURE, {"parity": {"enabled": False}},
                               VERSION["shifted"], tmp_path / "labels")
    assert "distribution" in against_labels.failed_checks and "labels" in against_labels.check("distribution").message
    nothing = _validate(canary, unlabelled_path, models.SIGNATURE, {"parity": {"enabled": False}},
                        VERSION["shifted"], tmp_path / "nothing")
    assert nothing.check("distribution").status == "skipped"
    assert "no baseline" in nothing.check("distribution").message


# ----------------------------------------------------------------- rubber stamps: listed, and refusable
def test_a_first_deploy_without_thresholds_lists_its_gates_and_require_rejects_it(canary, unlabelled_path, tmp_path):
    loose = _validate(canary, unlabelled_path, models.SIGNATURE, {"parity": {"enabled": False}},
                      VERSION["chance"], tmp_path / "loose")
    # (the chance model has the sigmoid signature; the reference fits its input)
    not_run = {g["check"] for g in loose.to_dict()["gates_not_run"]}
    assert loose.verdict == "passed" and {"quality", "regression", "distribution"} <= not_run
    assert "gates that did not run" in loose.to_markdown()
    strict = _validate(canary, unlabelled_path, models.SIGNATURE,
                       {"parity": {"enabled": False}, "require": ["quality"]}, VERSION["chance"], tmp_path / "strict")
    assert strict.failed_checks == ["quality"]
    assert "required by the config (require: [quality]) but not judged" in strict.check("quality").message


def test_require_is_met_when_the_check_judged(canary, reference_parquet, tmp_path):
    report = _validate(canary, reference_parquet, models.SIGNATURE,
                       {"require": ["quality"], "quality": {"max_mae": 0.2}}, VERSION["good"], tmp_path)
    assert report.verdict == "passed", report.to_markdown()


# ----------------------------------------------------------------- service level: a steady load
def test_a_slow_candidate_fails_the_p95_ratio_against_production(canary, reference_parquet, tmp_path):
    report = _validate(canary, reference_parquet, models.SIGNATURE,
                       {"parity": {"enabled": False}, "regression": {"enabled": False},
                        "service_level": {"requests": 12, "min_requests": 12, "max_p95_ms": None}},
                       VERSION["slow"], tmp_path, baseline=VERSION["good"])
    assert report.failed_checks == ["service_level"], report.to_markdown()
    figures = {m.metric: m for m in report.check("service_level").measurements}
    assert figures["p95_ratio"].value > 1.5 and not figures["p95_ratio"].passed
    assert figures["baseline_p95_ms"].value < figures["p95_ms"].value
    assert "interleaved" in report.check("service_level").message
    assert (tmp_path / "report" / "latency.png").is_file()
    # The same slowdown within ratio_min_difference_ms is not judged a slowdown: the setting is applied.
    lenient = _validate(canary, reference_parquet, models.SIGNATURE,
                        {"parity": {"enabled": False}, "regression": {"enabled": False},
                         "service_level": {"requests": 12, "min_requests": 12, "max_p95_ms": None,
                                           "ratio_min_difference_ms": 60_000}},
                        VERSION["slow"], tmp_path / "lenient", baseline=VERSION["good"])
    assert lenient.check("service_level").status == "passed", lenient.to_markdown()
    assert "not a slowdown" in lenient.check("service_level").message


def test_the_same_model_passes_the_ratio_and_too_few_requests_are_not_judged(canary, reference_parquet, tmp_path):
    same = _validate(canary, reference_parquet, models.SIGNATURE,
                     {"parity": {"enabled": False}, "service_level": {"max_p95_ratio": 3.0}},
                     VERSION["good"], tmp_path / "same", baseline=VERSION["good"])
    assert same.check("service_level").status == "passed", same.to_markdown()
    assert {m.metric: m for m in same.check("service_level").measurements}["requests_measured"].value == 60
    few = _validate(canary, reference_parquet, models.SIGNATURE,
                    {"service_level": {"requests": 5, "max_p95_ms": 0.001}}, VERSION["good"], tmp_path / "few")
    assert few.check("service_level").status == "skipped", few.to_markdown()
    assert "too few requests: 5 measured, at least 50" in few.check("service_level").message


def _sl(report):
    check = report.check("service_level")
    return check, {m.metric: m for m in check.measurements}["requests_measured"].value


def test_the_default_load_stops_at_its_budget_on_a_slow_model_and_still_fails_it(canary, reference_parquet,
                                                                                   tmp_path):
    # No requests set: the default load (200) is cut at budget_s (2 s) once min_requests answered.
    slow = validate(canary[0], load_reference(reference_parquet, models.SIGNATURE, load_config({})),
                    load_config({"batch_size": 64, "parity": {"enabled": False},
                                 "service_level": {"min_requests": 4, "max_p95_ms": 100}}),
                    candidate=VERSION["slow"], out_dir=tmp_path / "slow", load_seconds=canary[1])
    check, measured = _sl(slow)
    assert slow.failed_checks == ["service_level"], slow.to_markdown()
    assert "stopped by budget 2 s (service_level.budget_s)" in check.message
    assert 4 <= measured < 200
    # A fast model's 200 requests end long before the budget: its load is as before.
    fast = _validate(canary, reference_parquet, models.SIGNATURE, {}, VERSION["good"], tmp_path / "fast")
    assert fast.check("service_level").status == "passed", fast.to_markdown()


def test_a_configured_request_count_is_not_cut_by_the_default_budget_and_a_configured_budget_is_applied(
        canary, reference_parquet, tmp_path):
    counted = _validate(canary, reference_parquet, models.SIGNATURE,
                        {"parity": {"enabled": False}, "service_level": {"requests": 40, "min_requests": 4}},
                        VERSION["slow"], tmp_path / "counted")
    check, measured = _sl(counted)
    assert measured == 40 and "stopped by request count" in check.message  # ~2.5 s: past the default budget
    budgeted = _validate(canary, reference_parquet, models.SIGNATURE,
                         {"parity": {"enabled": False},
                          "service_level": {"requests": 200, "min_requests": 4, "budget_s": 0.5}},
                         VERSION["slow"], tmp_path / "budgeted")
    check, measured = _sl(budgeted)
    assert 4 <= measured < 40 and "stopped by budget 0.5 s" in check.message


# ----------------------------------------------------------------- load: time to AVAILABLE
def test_the_load_check_fails_past_its_deadline_and_passes_before_it(canary, reference_parquet, tmp_path):
    late = _validate(canary, reference_parquet, models.SIGNATURE, {"load": {"deadline_s": 0.001}},
                     VERSION["good"], tmp_path / "late")
    assert late.failed_checks == ["load"], late.to_markdown()
    on_time = _validate(canary, reference_parquet, models.SIGNATURE, {"load": {"deadline_s": 120}},
                        VERSION["good"], tmp_path / "on_time")
    assert on_time.check("load").status == "passed"


# ----------------------------------------------------------------- several outputs
def test_several_outputs_each_with_its_settings_are_named_in_the_report(canary, reference_parquet, reference_arrays,
                                                                         tmp_path):
    import numpy as np

    golden = {"prediction": reference_arrays["golden"], "probability": 1 / (1 + np.exp(-reference_arrays["golden"]))}
    two = {"inputs": models.SIGNATURE["inputs"], "outputs": {**models.SIGNATURE["outputs"],
                                                             **models.SIGMOID_SIGNATURE["outputs"]}}
    config = {"outputs": {"prediction": {"quality": {"max_mae": 0.2}}, "probability": {"label_column": "p_label"}}}
    report = _validate(canary, reference_parquet, two, config, VERSION["two_heads"], tmp_path,
                       golden=golden)
    assert report.verdict == "passed", report.to_markdown()
    assert [(o["name"], o["label_column"]) for o in report.outputs] == [("prediction", "label"), ("probability", None)]
    parity = {m.key for m in report.check("parity").measurements}
    assert parity == {"prediction.fraction_within_tolerance", "probability.fraction_within_tolerance"}
    assert "quality.prediction.mae" in report.figures()
    # Each output has its plots: the first under the plain names, the other under its own name.
    assert {"plot_predicted_vs_expected", "plot_predicted_vs_expected.probability",
            "plot_prediction_distribution.probability"} <= set(report.artifacts), sorted(report.artifacts)
    assert (tmp_path / "report" / "probability.prediction_distribution.png").read_bytes()[:4] == b"\x89PNG"
    assert "plot_prediction_distribution.probability" in (tmp_path / "report" / "report.html").read_text()
    strict = _validate(canary, reference_parquet, two,
                       {"outputs": {"prediction": {"quality": {"max_mae": 0.01}}, "probability": {"label_column": "x"}}},
                       VERSION["two_heads"], tmp_path / "strict", golden=golden)
    assert "quality" in strict.failed_checks and "prediction.mae = " in strict.check("quality").message
    one = _validate(canary, reference_parquet, two, {"output": "prediction"}, VERSION["two_heads"],
                    tmp_path / "one", golden=golden)
    assert [o["name"] for o in one.outputs] == ["prediction"] and one.unvalidated_outputs == ["probability"]
    assert "outputs not validated: probability" in one.to_markdown()
    # Without output/outputs, the reference's one label column could label either output: refused.
    with pytest.raises(ValidationConfigError, match=r"field 'outputs': .* 2 outputs it could belong to "
                                                    r"\(prediction, probability\)"):
        _validate(canary, reference_parquet, two, {}, VERSION["two_heads"], tmp_path / "none", golden=golden)


# ----------------------------------------------------------------- configured values are applied
def test_load_shape_settings_are_applied(canary, reference_parquet, tmp_path):
    report = _validate(canary, reference_parquet, models.SIGNATURE,
                       {"service_level": {"duration_s": 0.5, "requests": 1, "min_requests": 1, "concurrency": 2,
                                          "rows_per_request": 4}}, VERSION["good"], tmp_path)
    message = report.check("service_level").message
    assert "of 4 row(s), concurrency 2" in message and "stopped by duration 0.5 s" in message
    measured = {m.metric: m for m in report.check("service_level").measurements}["requests_measured"].value
    assert measured > 1  # the duration, not the count of 1, ended the load


def test_distribution_against_labels_with_a_baseline_and_data_docs_on_request(canary, reference_parquet, tmp_path):
    report = _validate(canary, reference_parquet, models.SIGNATURE,
                       {"distribution": {"against": "labels"}, "data_docs": True, "parity": {"enabled": False}},
                       VERSION["good"], tmp_path, baseline=VERSION["shifted"])
    assert report.check("distribution").status == "passed" and "labels" in report.check("distribution").message
    assert (tmp_path / "report" / "data_docs" / "index.html").is_file() and "data_docs" in report.artifacts
