"""Gates that could be off without a word, as a CI job meets them: ``servegate deploy`` as a
subprocess in a brand-new HOME.

- A reference column that nothing reads (a misspelt ``lable``) is refused up front with the
  nearest expected name, instead of a promotion with quality and regression silently off.
- A label that several outputs could share is refused, listing them, instead of judging one
  output (the first by name) against it.
- A quality threshold of the other task (``max_mae`` on a sigmoid classifier) is refused
  before any run, not after a version was staged and a canary booted.
- A Keras model's output layer names are what the canary serves (gRPC metadata, REST answer
  keys), every output is validated, and the JSON and the verdict line say which gates did not run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.flows.test_cli_fresh_home import servegate
from tests.support.cli import assert_nothing_opened

NAME = "gates"


@pytest.fixture(scope="module")
def gate_files(tmp_path_factory) -> Path:
    """A one-output sigmoid classifier, a two-output model (``prob``, ``score``), references."""
    import keras

    root = tmp_path_factory.mktemp("gates")
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,), name="features", dtype="float32")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="prob")(hidden)).save(root / "clf.keras")
    keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="prob")(hidden),
                         keras.layers.Dense(1, name="score")(hidden)]).save(root / "two.keras")
    x = np.random.default_rng(5).normal(size=(64, 4)).astype("float32")
    labels = (x[:, 0] > 0).astype("float64")
    pd.DataFrame({"features": list(x)}).to_parquet(root / "nolabels.parquet")
    pd.DataFrame({"features": list(x), "lable": labels}).to_parquet(root / "typo.parquet")
    pd.DataFrame({"features": list(x), "label": labels}).to_parquet(root / "labels.parquet")
    (root / "mae.yaml").write_text("quality:\n  max_mae: 0.4\n")
    (root / "rest.yaml").write_text("transport: rest\n")
    return root


# name: (model, reference, config or None, what the last stderr line must say)
REFUSED = {
    "typo'd label": ("clf.keras", "typo.parquet", None,
                     r"reference file \S+typo\.parquet: column 'lable' \(nearest expected name: 'label'\) is not a "
                     r"model input, a label or the golden column .*'reference\.ignore_columns'"),
    "label two outputs could share": ("two.keras", "labels.parquet", None,
                                      r"field 'outputs': the reference \S+labels\.parquet has a label column 'label' "
                                      r"and the model has 2 outputs it could belong to \(prob, score\); say which "
                                      r"output it labels: outputs: \{prob: \{label_column: label\}, score: \{\}\}"),
    "max_mae on a classifier": ("clf.keras", "labels.parquet", "mae.yaml",
                                r"mae\.yaml: field 'quality\.max_mae': judges regression, but output 'prob' is "
                                r"classification \(.*sigmoid.*\); the thresholds that apply to classification are "
                                r"min_accuracy, min_auc"),
}


# A CLI run each (~10-15 s): CI's second step. tests/validation/test_preflight.py checks the same refusals in-process.
@pytest.mark.slow
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.reliability)
                                  for c in REFUSED])
def test_unread_columns_shared_labels_and_wrong_task_thresholds_are_refused_before_any_run(case, gate_files, tmp_path):
    model, reference, config, expected = REFUSED[case]
    home = tmp_path / "home"
    home.mkdir()
    args = ["deploy", "--model", str(gate_files / model), "--name", NAME, "--reference", str(gate_files / reference),
            "--json", *(["--config", str(gate_files / config)] if config else [])]
    result = servegate(home, *args)
    assert result.returncode == 2, result.stderr[-3000:]
    error = json.loads(result.stdout)["error"]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(expected, last), last
    assert error["message"] in last and "Traceback" not in result.stderr
    # Up front: no MLflow run, nothing staged, no Prefect flow run.
    assert not (home / ".servegate" / "mlflow.db").exists()
    assert not (home / ".servegate" / "store" / "staging").exists()
    assert_nothing_opened(home)


@pytest.mark.slow
@pytest.mark.reliability  # a whole deploy (~25 s): CI's second step
def test_a_two_output_keras_model_is_served_and_validated_under_its_output_names(gate_files, tmp_path):
    from servegate import export

    home = tmp_path / "home"
    home.mkdir()
    # REST: the canary's answers are read by output name ({"predictions": [{"prob": ..., "score": ...}]}).
    done = servegate(home, "deploy", "--model", str(gate_files / "two.keras"), "--name", NAME, "--reference",
                     str(gate_files / "nolabels.parquet"), "--config", str(gate_files / "rest.yaml"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert outcome["verdict"] == "promoted" and outcome["reasons"] == []
    # Both outputs validated, under the names the canary served (its metadata), each with its task.
    assert [o["name"] for o in outcome["outputs"]] == ["prob", "score"], outcome["outputs"]
    assert outcome["task"] == outcome["outputs"][0]["task"] == "regression"
    assert "no labels" in outcome["outputs"][0]["task_reason"]
    assert {"prob.fraction_within_tolerance", "score.fraction_within_tolerance"} <= {
        k.removeprefix("parity.") for k in outcome["figures"]}
    not_run = {g["check"]: g["reason"] for g in outcome["gates_not_run"]}
    assert "no label column 'label'" in not_run["quality"], not_run
    assert "first deployment" in not_run["regression"], not_run
    # The verdict line a person reads in the CI log says so too.
    verdict = [line for line in done.stderr.splitlines() if line.startswith(f"{NAME}: version 1 ")]
    assert len(verdict) == 1 and verdict[0].startswith(f"{NAME}: version 1 promoted without a quality check: "), verdict
    assert "quality: the reference has no label column 'label'" in verdict[0], verdict
    # What production serves keeps the names.
    served = export.read_signature(home / ".servegate" / "store" / "production" / NAME / "1")
    assert served.output_names == ["prob", "score"]
