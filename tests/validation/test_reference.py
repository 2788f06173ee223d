"""Reference files: formats, column mapping, batching, and every bad input named before a canary starts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servegate.errors import ValidationInputError
from servegate.validation import ReferenceError, load_config, load_reference
from tests.validation.models import SIGNATURE

REST_METADATA = {  # the same signature as TF Serving's REST /metadata answers it
    "model_spec": {"name": "lin", "version": "1"},
    "metadata": {"signature_def": {"signature_def": {"serving_default": {
        "inputs": {"features": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": "4"}],
                                                                      "unknown_rank": False}}},
        "outputs": {"prediction": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": "1"}]}}},
        "method_name": "tensorflow/serving/predict"}}}},
}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(1000, 4)).astype("float32")


def _frame(x, **extra):
    return pd.DataFrame({"features": list(x), **extra})


def _all_rows(ref, batch_size):
    return np.concatenate([b["features"] for b in ref.batches(batch_size)])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_every_format_reads_back_the_same_rows_in_batches(tmp_path, x, fmt):
    label = x.sum(axis=1)
    path = tmp_path / f"ref.{fmt}"
    if fmt == "csv":  # CSV has no list type: several columns by prefix
        pd.DataFrame({**{f"features_{i}": x[:, i] for i in range(4)}, "label": label}).to_csv(path, index=False)
    elif fmt == "parquet":
        _frame(x, label=label).to_parquet(path)
    else:
        _frame(x, label=label).to_json(path, orient="records", lines=True)
    ref = load_reference(path, SIGNATURE)
    assert ref.n_rows == 1000 and ref.has_labels
    sizes = [len(b["features"]) for b in ref.batches(300)]
    assert sizes == [300, 300, 300, 100]
    rows = _all_rows(ref, 300)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, x, rtol=1e-6)
    np.testing.assert_allclose(ref.labels(), label, rtol=1e-5)


def test_tf_serving_metadata_is_a_signature_too(tmp_path, x):
    path = tmp_path / "ref.parquet"
    _frame(x).to_parquet(path)
    assert load_reference(path, REST_METADATA).inputs["features"].is_list


def test_columns_and_prefixes_from_the_config(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(4)}, "y": x[:, 0], "g0": x[:, 1]}).to_parquet(path)
    config = load_config({"reference": {"prefixes": {"features": "f"}, "label_column": "y", "golden_column": "g"}})
    ref = load_reference(path, SIGNATURE, config)
    np.testing.assert_array_equal(_all_rows(ref, 512), x)
    np.testing.assert_array_equal(ref.labels(), x[:, 0])
    np.testing.assert_array_equal(ref.golden().reshape(len(x), -1)[:, 0], x[:, 1])

    other = tmp_path / "renamed.parquet"
    pd.DataFrame({"pixels": list(x)}).to_parquet(other)
    ref = load_reference(other, SIGNATURE, load_config({"reference": {"columns": {"features": "pixels"}}}))
    np.testing.assert_array_equal(_all_rows(ref, 512), x)


def test_prefix_columns_are_ordered_by_number_not_by_name(tmp_path):
    sig = {"inputs": {"x": {"dtype": "float32", "shape": [None, 12]}}}
    values = np.arange(24, dtype="float32").reshape(2, 12)
    path = tmp_path / "ref.csv"
    pd.DataFrame({f"x_{i}": values[:, i] for i in reversed(range(12))}).to_csv(path, index=False)
    np.testing.assert_array_equal(next(load_reference(path, sig).batches(10))["x"], values)


# ------------------------------------------------------------------ bad input
def _expect(path, match, signature=SIGNATURE, config=None):
    with pytest.raises(ReferenceError, match=match) as info:
        load_reference(path, signature, config)
    assert isinstance(info.value, ValidationInputError)
    return str(info.value)


def test_missing_file(tmp_path):
    _expect(tmp_path / "absent.parquet", r"absent\.parquet: no such file")


def test_a_directory_is_not_a_reference_file(tmp_path):
    (tmp_path / "dir.parquet").mkdir()
    _expect(tmp_path / "dir.parquet", "not a regular file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    _expect(tmp_path / "empty.csv", r"empty file \(0 bytes\)")


def test_file_with_a_header_and_no_rows(tmp_path):
    (tmp_path / "header.csv").write_text("features_0,features_1,features_2,features_3\n")
    _expect(tmp_path / "header.csv", "no rows")


def test_unreadable_file(tmp_path):
    (tmp_path / "garbage.parquet").write_bytes(b"this is not parquet at all")
    _expect(tmp_path / "garbage.parquet", "cannot read it as parquet")


def test_unknown_format(tmp_path):
    (tmp_path / "ref.xlsx").write_bytes(b"PK")
    _expect(tmp_path / "ref.xlsx", "unknown format '.xlsx'")


def test_missing_columns_are_named_with_those_present(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"inputs": list(x), "label": x[:, 0]}).to_parquet(path)
    message = _expect(path, "lacks columns the signature needs")
    assert "input 'features'" in message and "Columns present: inputs, label" in message


def test_configured_column_that_is_not_there(tmp_path, x):
    path = tmp_path / "ref.parquet"
    _frame(x).to_parquet(path)
    _expect(path, r"configured column 'pixels' \(field 'reference.columns'\) is not in the file",
            config=load_config({"reference": {"columns": {"features": "pixels"}}}))


def test_wrong_dtype_is_named(tmp_path):
    path = tmp_path / "ref.csv"
    pd.DataFrame({"features_0": ["a"], "features_1": [1.0], "features_2": [1.0], "features_3": [1.0]}).to_csv(
        path, index=False)
    _expect(path, "column 'features_0' has type string, but input 'features' needs float32")


def test_wrong_number_of_prefix_columns(tmp_path, x):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({f"features_{i}": x[:, i] for i in range(3)}).to_parquet(path)
    _expect(path, r"4 values per row\) but maps to 3 column")


def test_list_column_of_the_wrong_width(tmp_path, x):
    path = tmp_path / "ref.parquet"
    rows = list(x)
    rows[7] = rows[7][:3]
    pd.DataFrame({"features": rows}).to_parquet(path)
    _expect(path, "column 'features' row 7 holds 3 values; the input needs 4")


def test_nan_in_an_input_names_the_column_and_row(tmp_path, x):
    path = tmp_path / "ref.parquet"
    bad = x.copy()
    bad[523, 2] = np.nan
    bad[523, 3] = np.nan  # two values, one row: the message counts rows and says so
    _frame(bad).to_parquet(path)
    _expect(path, r"input column 'features' has NaN/null values in 1 row\(s\) of rows .*first at row 523")


def test_nan_in_a_prefix_column(tmp_path, x):
    path = tmp_path / "ref.csv"
    frame = pd.DataFrame({f"features_{i}": x[:, i] for i in range(4)})
    frame.loc[10, "features_3"] = np.nan
    frame.to_csv(path, index=False)
    _expect(path, r"input column 'features_3' has NaN/null values in 1 row\(s\)")


def test_labels_required_when_quality_is_enabled(tmp_path, x):
    path = tmp_path / "ref.parquet"
    _frame(x).to_parquet(path)
    _expect(path, "quality check is enabled for output 'prediction' but there is no label column 'label'",
            config=load_config({"quality": {"enabled": True}}))
    assert not load_reference(path, SIGNATURE).has_labels  # default: quality runs when labels exist


def test_nan_labels(tmp_path, x):
    path = tmp_path / "ref.parquet"
    label = x[:, 0].copy()
    label[3] = np.nan
    _frame(x, label=label).to_parquet(path)
    _expect(path, r"label column 'label' has NaN/null values in 1 row\(s\)")


def test_non_numeric_labels(tmp_path, x):
    path = tmp_path / "ref.parquet"
    _frame(x, label=["cat"] * len(x)).to_parquet(path)
    _expect(path, "label column 'label' has type string")


def test_a_small_reference_is_sent_from_memory_after_its_scan(tmp_path, x):
    """Held from the scan, the rows are the file's rows; a change to the file after the checks does not
    reach the canary, and no caller can change the held rows through a batch."""
    path = tmp_path / "ref.parquet"
    _frame(x).to_parquet(path)
    ref = load_reference(path, SIGNATURE)
    path.unlink()  # every later pass reads memory, not the file
    assert [len(b["features"]) for b in ref.batches(300)] == [300, 300, 300, 100]
    np.testing.assert_array_equal(_all_rows(ref, 300), x)
    batch = next(iter(ref.batches(10)))["features"]
    with pytest.raises(ValueError, match="read-only"):
        batch[0, 0] = 1.0


def test_a_reference_bigger_than_the_bound_streams_from_the_file(tmp_path, x, monkeypatch):
    from servegate.validation import reference as module

    monkeypatch.setattr(module, "IN_MEMORY_BYTES", x[:500].nbytes)  # half the rows fit: none are held
    path = tmp_path / "ref.parquet"
    _frame(x).to_parquet(path)
    ref = load_reference(path, SIGNATURE)
    np.testing.assert_array_equal(_all_rows(ref, 300), x)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        next(iter(ref.batches(300)))
