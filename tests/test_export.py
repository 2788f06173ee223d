"""export.py: every bad input gets a named ExportError; good inputs give a
SavedModel with serving_default, its signature and golden predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from servegate import export
from servegate.errors import ExportError
from tests import modelzoo


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory) -> dict[str, Path]:
    """The same tiny regressor saved as .keras and .h5 (built once)."""
    root = tmp_path_factory.mktemp("keras_files")
    model = modelzoo.regressor()
    paths = {"keras": root / "m.keras", "h5": root / "m.h5"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    return paths


def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


# ---- bad input, each with its named error and the path in the message


def test_missing_file(tmp_path):
    with pytest.raises(export.ModelFileMissingError, match="nope.keras"):
        export.export_model(tmp_path / "nope.keras", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    with pytest.raises(export.ModelFileEmptyError, match="empty.keras"):
        export.export_model(empty, tmp_path / "out")


def test_empty_directory(tmp_path):
    (tmp_path / "sm").mkdir()
    with pytest.raises(export.ModelFileEmptyError, match="sm"):
        export.export_model(tmp_path / "sm", tmp_path / "out")


def test_truncated_keras(tmp_path, keras_files):
    bad = _truncate(keras_files["keras"], tmp_path / "cut.keras")
    with pytest.raises(export.ModelFileTruncatedError, match="cut.keras"):
        export.export_model(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_h5(tmp_path, keras_files):
    bad = _truncate(keras_files["h5"], tmp_path / "cut.h5")
    with pytest.raises(export.ModelFileTruncatedError, match="cut.h5"):
        export.export_model(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_text_file_named_keras_is_not_a_model(tmp_path):
    bad = tmp_path / "notes.keras"
    bad.write_text("hello, I am not a model\n")
    with pytest.raises(export.NotAModelError, match="notes.keras"):
        export.export_model(bad, tmp_path / "out")


def test_zip_without_keras_config_is_not_a_model(tmp_path):
    import zipfile

    bad = tmp_path / "other.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("readme.txt", "not keras")
    with pytest.raises(export.NotAModelError, match="config.json"):
        export.export_model(bad, tmp_path / "out")


def test_wrong_format(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x01")
    with pytest.raises(export.UnsupportedModelFormatError, match=r"model.onnx.*expected a \.keras or \.h5"):
        export.export_model(bad, tmp_path / "out")


def test_directory_without_saved_model_pb(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"x")
    with pytest.raises(export.NotAModelError, match="saved_model.pb"):
        export.export_model(d, tmp_path / "out")


def test_corrupt_saved_model_pb(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "saved_model.pb").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(export.NotAModelError, match="cannot be loaded"):
        export.export_model(d, tmp_path / "out")


def test_savedmodel_without_serving_signature(tmp_path):
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return {"y": x * 2}

    module = Doubler()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"double": module.double.get_concrete_function()})
    with pytest.raises(export.MissingServingSignatureError, match=r"serving_default.*found: double"):
        export.export_model(tmp_path / "sm", tmp_path / "out")


def test_existing_target_is_refused(tmp_path, tiny_savedmodel):
    (tmp_path / "out").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        export.export_model(tiny_savedmodel, tmp_path / "out")


# ---- good input


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_keras_file_exports_with_signature(tmp_path, keras_files, kind):
    result = export.export_model(keras_files[kind], tmp_path / "out")
    assert result.source_format == kind
    assert (tmp_path / "out" / "saved_model.pb").is_file()
    sig = result.signature
    assert sig.input_names == ["features"]
    assert sig.inputs[0].dtype == "float32" and sig.inputs[0].shape == (None, 4)
    assert sig.outputs[0].shape == (None, 1)
    # the record round-trips through JSON
    assert export.ModelSignature.from_dict(json.loads(sig.to_json())) == sig
    assert export.read_signature(tmp_path / "out") == sig


def test_savedmodel_is_copied_and_golden_matches_keras(tmp_path, tiny_savedmodel, keras_files):
    result = export.export_model(tiny_savedmodel, tmp_path / "out")
    assert result.source_format == "savedmodel"
    x = modelzoo.reference_inputs(n_rows=10)
    golden = export.golden_predictions(result.savedmodel_dir, {"features": x}, batch_size=3)
    (out_name,) = result.signature.output_names
    assert golden[out_name].shape == (10, 1)
    import keras

    expected = keras.saving.load_model(keras_files["keras"], compile=False).predict(x, verbose=0)
    np.testing.assert_allclose(golden[out_name], expected, rtol=1e-5, atol=1e-6)


def test_golden_with_wrong_inputs_names_them(tiny_savedmodel):
    with pytest.raises(ExportError, match=r"\['x'\].*\['features'\]"):
        export.golden_predictions(tiny_savedmodel, {"x": np.zeros((2, 4), "float32")})
