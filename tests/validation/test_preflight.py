"""Bad input refused up front (issue 10 item 4): reference and config against the model's signature.

These run before any canary, MLflow run or Prefect flow exists, so they must
not import TensorFlow, Prefect or MLflow; each message names the file, the
field, what was found and what was expected.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from servegate.errors import ConfigError, ValidationInputError
from servegate.export import ModelSignature
from servegate.validation import ReferenceError, check_config_against_signature, load_config, load_reference
from tests.conftest import REPO_ROOT

SIG = ModelSignature.from_dict({
    "inputs": [{"name": "features", "dtype": "float32", "shape": [None, 4]}],
    "outputs": [{"name": "prediction", "dtype": "float32", "shape": [None, 1]},
                {"name": "score", "dtype": "float32", "shape": [None, 3]}]})


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(20, 4)).astype("float32")


def _config(tmp_path, text):
    path = tmp_path / "validation.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("signature", [SIG, SIG.to_dict()])
def test_an_output_the_model_lacks_names_the_file_field_and_the_outputs(tmp_path, signature):
    config = _config(tmp_path, "output: prob\n")
    with pytest.raises(ConfigError) as info:
        check_config_against_signature(config, signature)
    assert str(info.value) == (f"validation config {tmp_path / 'validation.yaml'}: field 'output': 'prob' is not an "
                               "output of the model (outputs: prediction, score)")
    assert check_config_against_signature(_config(tmp_path, "output: score\n"), signature) == ["score"]
    # No output named: every output a check can read is validated, not just the first by name.
    assert check_config_against_signature(None, signature) == ["prediction", "score"]


def test_a_threshold_for_the_other_task_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ConfigError, match=r"field 'quality.max_mae': judges regression, but output 'score' is "
                                          r"classification \(3 values per row\); the thresholds that apply to "
                                          r"classification are min_accuracy, min_auc"):
        check_config_against_signature(_config(tmp_path, "output: score\nquality: {max_mae: 1}\n"), SIG)
    with pytest.raises(ConfigError, match=r"field 'quality.min_accuracy': judges classification, .* \(set in the config\)"):
        check_config_against_signature(_config(tmp_path, "task: regression\nquality: {min_accuracy: 0.9}\n"), SIG)
    with pytest.raises(ConfigError, match=r"field 'outputs.nope': 'nope' is not an output"):
        check_config_against_signature({"outputs": {"nope": {}}}, SIG)


def test_classification_thresholds_with_continuous_labels_are_refused_at_load(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"features": list(x), "label": x[:, 0]}).to_parquet(path)
    with pytest.raises(ConfigError, match=r"'quality.min_accuracy': judges classification, but output 'prediction' "
                                          r"is regression \(one value per row and the labels in 'label' are not all 0/1\)"):
        load_reference(path, SIG, {"output": "prediction", "quality": {"min_accuracy": 0.8}})


def test_a_threshold_without_labels_is_refused_not_dropped(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"features": list(x)}).to_parquet(path)
    with pytest.raises(ReferenceError, match=r"quality thresholds \['max_mae'\] are set for output 'prediction' but "
                                             r"there is no label column 'label' \(columns: features\)"):
        load_reference(path, SIG, {"output": "prediction", "quality": {"max_mae": 0.5}})


def test_the_removed_kl_setting_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"'sanity.max_kl_divergence' was removed.*distribution.max_ks"):
        load_config({"sanity": {"max_kl_divergence": 0.5}})


def test_a_reference_missing_a_column(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"inputs": list(x)}).to_parquet(path)
    with pytest.raises(ReferenceError) as info:
        load_reference(path, SIG)
    assert str(info.value) == (f"reference file {path}: lacks columns the signature needs: input 'features': no "
                               "column 'features' and no columns features_0, features_1, .... Columns present: inputs")


def test_a_column_of_the_wrong_dtype(tmp_path):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"features": [["a", "b", "c", "d"]] * 3}).to_parquet(path)
    with pytest.raises(ReferenceError, match=r"ref.parquet: column 'features' has type list<element: string>, but "
                                             r"input 'features' needs float32"):
        load_reference(path, SIG)


def test_an_empty_pandas_parquet_says_0_rows_not_type_null(tmp_path):
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"features": pd.Series([], dtype=object), "label": pd.Series([], dtype=object)}).to_parquet(path)
    with pytest.raises(ReferenceError) as info:
        load_reference(path, SIG)
    assert str(info.value) == (f"reference file {path}: 0 rows (columns: features, label); expected at least one row")
    assert "null" not in str(info.value)


def test_a_csv_with_list_values_says_which_layouts_work(tmp_path, x):
    path = tmp_path / "ref.csv"
    pd.DataFrame({"features": [list(map(float, row)) for row in x]}).to_csv(path, index=False)
    with pytest.raises(ReferenceError) as info:
        load_reference(path, SIG)
    message = str(info.value)
    assert message.startswith(f"reference file {path}: column 'features' holds list values written as text ('[")
    assert "Input 'features' needs float32 values: use one scalar column per value with a shared prefix " \
           "(features_0, features_1, ..." in message
    assert "JSON lines / Parquet with a list column" in message
    assert isinstance(info.value, ValidationInputError)


def test_the_up_front_checks_import_neither_tensorflow_nor_prefect_nor_mlflow(tmp_path, x):
    good = tmp_path / "good.parquet"
    pd.DataFrame({"features": list(x), "label": x[:, 0]}).to_parquet(good)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"features": [list(map(float, row)) for row in x]}).to_csv(bad, index=False)
    code = f"""
import json, sys
from servegate.export import ModelSignature
from servegate.errors import ValidationInputError
from servegate.validation import check_config_against_signature, load_reference
sig = ModelSignature.from_dict(json.loads({json.dumps(json.dumps(SIG.to_dict()))}))
check_config_against_signature({{"output": "prediction", "quality": {{"max_mae": 1}}}}, sig)
load_reference({str(good)!r}, sig, {{"output": "prediction", "quality": {{"max_mae": 1}}}})
try:
    load_reference({str(bad)!r}, sig)
except ValidationInputError:
    pass
heavy = sorted(m for m in ("tensorflow", "prefect", "mlflow", "great_expectations", "matplotlib") if m in sys.modules)
print(json.dumps(heavy))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# ----------------------------------------------------------------- every column accounted for
ONE = ModelSignature.from_dict({"inputs": SIG.to_dict()["inputs"], "outputs": SIG.to_dict()["outputs"][:1]})


def test_a_misspelt_label_column_is_refused_naming_the_nearest_name(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"features": list(x), "lable": x[:, 0]}).to_parquet(path)
    with pytest.raises(ReferenceError) as info:
        load_reference(path, ONE)
    assert str(info.value) == (
        f"reference file {path}: column 'lable' (nearest expected name: 'label') is not a model input, a label or "
        "the golden column (expected: features, label, golden); rename it, or list it in the validation config's "
        "'reference.ignore_columns' to keep it in the file unread")
    # The same file with the column named as ignored loads (without labels); so does the right name.
    assert not load_reference(path, ONE, {"reference": {"ignore_columns": ["lable"]}}).has_labels
    pd.DataFrame({"features": list(x), "label": x[:, 0]}).to_parquet(path)
    assert load_reference(path, ONE).has_labels


def test_every_unread_column_is_named_and_golden_prefixes_and_pandas_index_are_known(tmp_path, x):
    path = tmp_path / "ref.parquet"
    frame = pd.DataFrame({"features": list(x), "golden_0": x[:, 1], "id": range(len(x)), "feature": x[:, 2]})
    frame.iloc[2:].to_parquet(path)  # a filtered frame: pandas writes its index as __index_level_0__
    with pytest.raises(ReferenceError, match=r"columns 'id' \(no expected name is close\), 'feature' \(nearest "
                                             r"expected name: 'features'\) are not a model input"):
        load_reference(path, ONE)
    ref = load_reference(path, ONE, {"reference": {"ignore_columns": ["id", "feature"]}})
    assert ref.golden_columns == ("golden_0",) and ref.n_rows == len(x) - 2


def test_a_label_two_outputs_could_share_is_refused_listing_them(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"features": list(x), "label": x[:, 0]}).to_parquet(path)
    with pytest.raises(ConfigError) as info:
        load_reference(path, SIG)
    message = str(info.value)
    assert message.startswith("validation config (defaults: no config file given): field 'outputs': the reference ")
    assert "label column 'label' and the model has 2 outputs it could belong to (prediction, score)" in message
    assert "outputs: {prediction: {label_column: label}, score: {}}" in message and "output: prediction" in message
    # Said which: both outputs validated, the label belongs to one.
    ref = load_reference(path, SIG, {"outputs": {"prediction": {"label_column": "label"}, "score": {}}})
    assert ref.label_columns == {"prediction": "label"}
    three = {"inputs": SIG.to_dict()["inputs"], "outputs": SIG.to_dict()["outputs"]
             + [{"name": "extra", "dtype": "float32", "shape": [None, 1]}]}
    ref = load_reference(path, three, {"outputs": {"score": {"label_column": "label"}, "prediction": {}, "extra": {}}})
    assert ref.label_columns == {"score": "label"}
    with pytest.raises(ReferenceError, match=r"quality thresholds \['max_mae'\] are set for output 'extra' but its "
                                             r"label column belongs to another output \(set "
                                             r"outputs.extra.label_column\)"):
        load_reference(path, three, {"outputs": {"score": {"label_column": "label"},
                                                 "extra": {"quality": {"max_mae": 1}}}})
    # No labels at all: both outputs are validated without them, nothing to choose.
    pd.DataFrame({"features": list(x)}).to_parquet(path)
    assert load_reference(path, SIG).label_columns == {}


def test_string_outputs_are_not_validated_by_default():
    sig = {"inputs": {"features": {"dtype": "float32", "shape": [None, 4]}},
           "outputs": {"class_name": {"dtype": "string", "shape": [None, 1]},
                       "prob": {"dtype": "float32", "shape": [None, 1]}}}
    assert check_config_against_signature(None, sig) == ["prob"]
    with pytest.raises(ConfigError, match=r"declares only string outputs \(class_name\)"):
        check_config_against_signature(None, {"inputs": sig["inputs"], "outputs": {"class_name": sig["outputs"]["class_name"]}})


def test_a_threshold_of_the_other_task_is_refused_from_the_models_own_answers(tmp_path, x):
    from servegate.validation.outputs import check_thresholds_with_answers

    path = tmp_path / "ref.parquet"
    labels = (x[:, 0] > 0).astype("float64")
    pd.DataFrame({"features": list(x), "label": labels}).to_parquet(path)
    sigmoid = {"prediction": 1 / (1 + np.exp(-x[:, :1]))}
    config = load_config({"quality": {"max_mae": 0.3}})
    ref = load_reference(path, ONE, config)  # 0/1 labels: the task waits for the answers
    with pytest.raises(ConfigError, match=r"field 'quality.max_mae': judges regression, but output 'prediction' is "
                                          r"classification \(one output in \[0, 1\] and 0/1 labels .*the thresholds "
                                          r"that apply to classification are min_accuracy, min_auc"):
        check_thresholds_with_answers(config, ref, sigmoid)
    check_thresholds_with_answers(config, ref, {"prediction": 3 * x[:, :1]})  # unbounded answers: a regression
    fitting = load_config({"quality": {"min_accuracy": 0.5}})
    check_thresholds_with_answers(fitting, load_reference(path, ONE, fitting), sigmoid)
