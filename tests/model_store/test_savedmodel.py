"""The SavedModel completeness check, on real SavedModels, without TensorFlow."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from servegate.model_store import NotASavedModel, check_savedmodel, read_signatures


def test_half_plus_two_signatures(hp2_src):
    info = check_savedmodel(hp2_src)
    assert info.tag_sets == [["serve"]]
    assert info.has_variables
    assert "serving_default" in info.signatures
    assert {"classify_x_to_y", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3"} <= set(info.signatures)
    sig = info.signatures["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert sig.inputs["x"].name == "x:0" and sig.inputs["x"].dtype == "DT_FLOAT"
    assert sig.inputs["x"].shape == [-1, 1]
    assert sig.outputs["y"].dtype == "DT_FLOAT"


def test_other_tfs_models(tfs_testdata):
    assert "serving_default" in read_signatures(tfs_testdata / "saved_model_half_plus_three" / "00000123")
    for version in ("00000123", "00000124"):
        check_savedmodel(tfs_testdata / "saved_model_half_plus_two_2_versions" / version)
    # A real SavedModel without serving_default: refused by default, accepted when not required.
    counter = tfs_testdata / "saved_model_counter" / "00000123"
    with pytest.raises(NotASavedModel, match="serving_default"):
        check_savedmodel(counter)
    assert "incr_counter" in check_savedmodel(counter, required_signature=None).signatures


def test_bad_half_plus_two_is_refused(tfs_testdata):
    bad = tfs_testdata / "bad_half_plus_two" / "00000123"
    with pytest.raises(NotASavedModel) as err:
        check_savedmodel(bad)
    assert str(bad) in str(err.value) and "saved_model.pb" in str(err.value)


def test_tiny_keras_savedmodel_matches_tensorflow(tiny_savedmodel):
    """Our protobuf-only listing agrees with TensorFlow's own loader on a Keras 3 export."""
    info = check_savedmodel(tiny_savedmodel)
    sig = info.signatures["serving_default"]
    assert set(sig.inputs) == {"features"}
    assert sig.inputs["features"].dtype == "DT_FLOAT"
    assert sig.inputs["features"].shape == [-1, 4]
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tiny_savedmodel))
    fn = loaded.signatures["serving_default"]
    # TensorFlow hides the internal init-op signature that the file lists.
    assert set(loaded.signatures.keys()) == set(info.signatures) - {"__saved_model_init_op"}
    assert set(fn.structured_outputs) == set(sig.outputs)


def test_check_does_not_import_tensorflow(hp2_src):
    code = ("import sys; from servegate.model_store import check_savedmodel; "
            f"check_savedmodel({str(hp2_src)!r}); assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("case", ["missing", "file", "empty", "junk", "garbage_pb", "empty_pb", "no_index",
                                  "missing_shard", "variables_file", "wrong_tags"])
def test_incomplete_savedmodels_are_named(case, hp2_src, tmp_path):
    path = tmp_path / "model"
    if case == "missing":
        expected = "does not exist"
    elif case == "file":
        path.write_text("x")
        expected = "not a directory"
    elif case == "empty":
        path.mkdir()
        expected = "is empty"
    elif case == "junk":
        path.mkdir()
        (path / "model.h5").write_text("x")
        expected = "no saved_model.pb"
    else:
        shutil.copytree(hp2_src, path)
        if case == "garbage_pb":
            (path / "saved_model.pb").write_bytes(b"\xff\xff\xff\xff not a protobuf")
            expected = "cannot be parsed"
        elif case == "empty_pb":
            (path / "saved_model.pb").write_bytes(b"")
            expected = "is empty"
        elif case == "no_index":
            (path / "variables" / "variables.index").unlink()
            expected = "variables.index"
        elif case == "missing_shard":
            (path / "variables" / "variables.data-00000-of-00001").rename(
                path / "variables" / "variables.data-00001-of-00002")
            expected = "variables.data-00000-of-00002"
        elif case == "variables_file":
            shutil.rmtree(path / "variables")
            (path / "variables").write_text("x")
            expected = "not a directory"
        elif case == "wrong_tags":
            with pytest.raises(NotASavedModel, match="tagged"):
                check_savedmodel(path, tags=("serve", "gpu"))
            return
    with pytest.raises(NotASavedModel) as err:
        check_savedmodel(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)
