"""The pieces validate() is made of, each on its own: contract rules, parity, metrics, KL partition, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from servegate.validation import CheckResult, Measurement, ValidationReport, parse_signature
from servegate.validation.checks import metrics
from servegate.validation.checks.contract import breaking_changes
from servegate.validation.checks.distribution import class_shift, ks, shift_sd
from servegate.validation.signature import SignatureFormatError
from servegate.validation.rows import derive, parity_excess


def _sig(inputs, outputs):
    return parse_signature({"inputs": inputs, "outputs": outputs})


BASE = _sig({"x": {"dtype": "float32", "shape": [None, 4]}}, {"y": {"dtype": "float32", "shape": [None, 1]}})


@pytest.mark.parametrize("inputs, outputs, expected", [
    ({"x": {"dtype": "float32", "shape": [-1, 4]}}, {"y": {"dtype": "float32", "shape": [None, 1]}}, []),
    ({"x": {"dtype": "float32", "shape": None}}, {"y": {"dtype": "float32", "shape": [None, 1]},
                                                   "extra": {"dtype": "int64", "shape": [None]}}, []),
    ({"x": {"dtype": "float64", "shape": [None, 4]}}, {"y": {"dtype": "float32", "shape": [None, 1]}},
     ["input 'x' dtype float32 -> float64"]),
    ({"x": {"dtype": "float32", "shape": [None, 5]}}, {"y": {"dtype": "float32", "shape": [None, 1]}},
     ["input 'x' shape [None, 4] -> [None, 5] (dimension 1: 4 -> 5)"]),
    ({"x": {"dtype": "float32", "shape": [None, 4]}, "z": {"dtype": "float32", "shape": [None]}},
     {"y": {"dtype": "float32", "shape": [None, 1]}}, ["input 'z' added (clients do not send it)"]),
    ({"x2": {"dtype": "float32", "shape": [None, 4]}}, {"y": {"dtype": "float32", "shape": [None]}},
     ["input 'x' removed", "input 'x2' added (clients do not send it)", "output 'y' shape [None, 1] -> [None] (rank 2 -> 1)"]),
    ({"x": {"dtype": "float32", "shape": [None, 4]}}, {"score": {"dtype": "float32", "shape": [None, 1]}},
     ["output 'y' removed"]),
])
def test_breaking_changes(inputs, outputs, expected):
    assert breaking_changes(BASE, _sig(inputs, outputs)) == expected


def test_signature_errors_name_what_is_missing():
    with pytest.raises(SignatureFormatError, match="no signature 'serving_default' \\(found: other\\)"):
        parse_signature({"metadata": {"signature_def": {"signature_def": {"other": {"inputs": {}}}}}})
    with pytest.raises(SignatureFormatError, match="unknown tensor dtype 'DT_COMPLEX'"):
        parse_signature({"inputs": {"x": {"dtype": "DT_COMPLEX"}}})


def test_parity_excess_is_within_tolerance_only_for_close_finite_values():
    golden = np.array([[1.0], [1.0], [100.0], [np.nan], [1.0]])
    served = np.array([[1.0 + 5e-6], [1.1], [100.005], [np.nan], [np.inf]])
    excess = parity_excess(served, golden, atol=1e-5, rtol=1e-4)
    assert list(excess <= 0) == [True, False, True, True, False]
    assert excess[4] == np.inf


def test_derive_picks_class_and_score_from_the_output_width():
    binary = derive(np.array([[0.2], [0.7], [np.nan]]), "classification", 0.5)
    assert list(binary.prediction[:2]) == [0.0, 1.0] and np.isnan(binary.prediction[2])
    multi = derive(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]), "classification", 0.5)
    assert list(multi.prediction) == [1.0, 0.0] and multi.score.shape == (2, 3)


def test_metrics():
    label = np.array([0, 0, 1, 1])
    assert metrics.binary_auc(np.array([0.1, 0.4, 0.35, 0.8]), label) == pytest.approx(0.75)
    assert metrics.binary_auc(np.array([0.1, 0.2, 0.3, 0.4]), label) == 1.0
    assert np.isnan(metrics.binary_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    scores = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    assert metrics.multiclass_auc(scores, np.array([0, 1, 2])) == 1.0
    pred, y = np.array([1.0, 2.0, np.nan]), np.array([1.5, 2.0, 0.0])
    assert metrics.mae(pred, y) == pytest.approx(0.25)
    assert metrics.rmse(pred, y) == pytest.approx(np.sqrt(0.125))


def test_ks_flags_a_shift_of_one_standard_deviation_and_not_noise():
    """The default max_ks 0.35 sits below D = 0.383 of a 1 sd shift and far above sampling noise."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=256), rng.normal(size=256)
    assert ks(a, b)[0] < 0.15
    d, p = ks(a + 1.0, b)
    assert d > 0.35 and p < 1e-6
    assert ks(a * 10 + 3, b * 10 + 3)[0] == pytest.approx(ks(a, b)[0])  # scale-free
    assert shift_sd(b + 2.0, b) == pytest.approx(2.0 / np.std(b))
    assert np.isnan(ks(np.array([np.nan]), b)[0])
    assert class_shift(np.array([0, 0, 1, 1.0]), np.array([0, 1, 1, 1.0])) == pytest.approx(0.25)


def test_report_json_and_markdown_name_the_failed_check(tmp_path):
    report = ValidationReport("m", "label 'canary'", "label 'stable'", 10, [
        CheckResult("load", "passed", "ok", [Measurement("seconds_to_available", 1.5, 60.0)]),
        CheckResult("parity", "failed", "out of bounds", [
            Measurement("fraction_within_tolerance", 0.5, 0.99, ">=", False, "gx", "ExpectColumnValuesToBeBetween")]),
        CheckResult("regression", "skipped", "no baseline"),
        CheckResult("sanity", "passed", "fine", [Measurement("kl_divergence", float("inf"), None)]),
    ], timings={"total_s": 2.0})
    data = json.loads(report.to_json())
    assert data["verdict"] == "failed" and data["failed_checks"] == ["parity"]
    assert data["checks"][1]["measurements"][0]["expectation"] == "ExpectColumnValuesToBeBetween"
    assert data["checks"][3]["measurements"][0]["value"] == "inf"  # JSON has no infinity
    md = report.to_markdown()
    assert "**FAILED**" in md and "| parity | FAIL | **fraction_within_tolerance = 0.5** | >= 0.99 |" in md
    assert report.figures() == {"load.seconds_to_available": 1.5, "parity.fraction_within_tolerance": 0.5}
    paths = report.write(tmp_path)
    assert json.loads(paths["report_json"].read_text())["verdict"] == "failed"


def test_load_check_compares_time_to_available_with_the_deadline():
    from servegate.validation import load_config
    from servegate.validation.checks import load_time
    from servegate.validation.checks.base import CheckContext
    from servegate.validation.gx_suite import SuiteOutcome
    from servegate.validation.checks.base import judge

    config = load_config({"load": {"deadline_s": 10}})

    def result(seconds):
        return judge(load_time.plan(CheckContext(config, BASE, [], load_seconds=seconds)), SuiteOutcome({}, {}), {})

    assert result(3.0).status == "passed"
    late = result(12.5)
    assert late.status == "failed" and late.measurements[0].describe() == "seconds_to_available = 12.5 (threshold <= 10)"
    assert result(None).status == "skipped"
