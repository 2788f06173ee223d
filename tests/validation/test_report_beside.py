"""``validate(beside=...)``: after a passed verdict the plots and report files are handed to ``beside``
to draw beside the promotion; after a failed verdict they are drawn before ``validate`` returns."""

from __future__ import annotations

import pytest

from servegate.validation import load_config, load_reference, validate
from tests.validation import models
from tests.validation.conftest import VERSION


def _validate(canary, path, version, tmp_path, handed: list):
    runner, load_seconds = canary
    config = load_config({"batch_size": 64, "quality": {"min_accuracy": 0.8}, "parity": {"enabled": False},
                          "service_level": {"requests": 60}})
    return validate(runner, load_reference(path, models.SIGMOID_SIGNATURE, config), config, candidate=version,
                    out_dir=tmp_path / "report", load_seconds=load_seconds, beside=handed.append)


def test_a_passed_verdicts_plots_and_report_files_are_handed_beside_and_complete_when_run(
        canary, sigmoid_path, tmp_path):
    handed: list = []
    report = _validate(canary, sigmoid_path, VERSION["sigmoid"], tmp_path, handed)
    assert report.verdict == "passed", report.to_markdown()
    assert len(handed) == 1
    assert not (tmp_path / "report" / "report.json").exists()  # the verdict came first
    assert not (tmp_path / "report" / "confusion_matrix.png").exists()
    handed[0]()
    assert {"plot_confusion_matrix", "report_json", "report_md", "report_html"} <= set(report.artifacts)
    assert (tmp_path / "report" / "confusion_matrix.png").is_file()
    assert "confusion_matrix.png" in (tmp_path / "report" / "report.json").read_text()
    assert "plots_s" in report.timings


def test_a_failed_verdicts_report_is_complete_when_validate_returns(canary, sigmoid_path, tmp_path):
    handed: list = []
    report = _validate(canary, sigmoid_path, VERSION["chance"], tmp_path, handed)
    assert report.verdict == "failed" and "quality" in report.failed_checks
    assert handed == []
    assert (tmp_path / "report" / "confusion_matrix.png").is_file()
    assert "confusion_matrix.png" in (tmp_path / "report" / "report.json").read_text()
