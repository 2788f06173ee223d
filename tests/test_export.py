"""export.py: every bad input gets a named ExportError; good inputs give a
SavedModel with serving_default, its signature and golden predictions."""

from __future__ import annotations

import json
import shutil
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


def test_golden_of_a_fresh_export_runs_the_export_already_loaded(tmp_path, keras_files, monkeypatch):
    """export_model loads the written SavedModel to read its signature; golden_predictions of that
    directory runs it instead of loading it again; a directory written again since is loaded again."""
    result = export.export_model(keras_files["keras"], tmp_path / "out")
    x = modelzoo.reference_inputs(n_rows=10)
    loads = []
    real_load = export.load_savedmodel
    monkeypatch.setattr(export, "load_savedmodel", lambda path: loads.append(path) or real_load(path))
    (golden,) = export.golden_predictions(result.savedmodel_dir, {"features": x}).values()
    assert loads == []
    (again,) = export.golden_predictions(result.savedmodel_dir, {"features": x}).values()  # kept once only
    assert len(loads) == 1
    np.testing.assert_allclose(golden, again, rtol=1e-6)
    import keras

    expected = keras.saving.load_model(keras_files["keras"], compile=False).predict(x, verbose=0)
    np.testing.assert_allclose(golden, expected, rtol=1e-5, atol=1e-6)
    export.export_model(keras_files["keras"], tmp_path / "other")
    shutil.rmtree(tmp_path / "other")
    shutil.copytree(tmp_path / "out", tmp_path / "other")  # another SavedModel at the kept path
    loads.clear()
    export.golden_predictions(tmp_path / "other", {"features": x})
    assert loads == [tmp_path / "other"]


def test_golden_with_wrong_inputs_names_them(tiny_savedmodel):
    with pytest.raises(ExportError, match=r"\['x'\].*\['features'\]"):
        export.golden_predictions(tiny_savedmodel, {"x": np.zeros((2, 4), "float32")})


# ---- models with custom code: --custom-objects and --unsafe-deserialization
#
# The model files are saved by a separate Python process, as a user's training
# script would: this test process has never imported the layer modules, so
# Keras's registry knows their classes only after export imports them. Each
# module registers ScaleLayer under its own package, so the tests do not depend
# on their order.

from tests.modelzoo import CUSTOM_LAYER_MODULE as _LAYER_MODULE  # noqa: E402  (a template: .format(package=...))

_BUILD_SCRIPT = '''
import sys
from pathlib import Path

import keras
import numpy as np

root = Path(sys.argv[1])
sys.path[:0] = [str(root / "site"), str(root / "files")]
import sgt_custom.layers as dotted
import sgt_file_layers as by_path
import sgt_h5_layers as h5_layers
import sgt_never_layers as never  # never imported by the tests: its class stays unknown to them

x = np.random.default_rng(3).normal(size=(10, 4)).astype("float32")
np.save(root / "x.npy", x)


def save(layer, name, suffix=".keras"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,), name="features", dtype="float32")
    model = keras.Model(inputs, keras.layers.Dense(1, name="prediction")(layer(inputs)))
    model.save(root / f"{name}{suffix}")
    np.save(root / f"{name}.npy", model.predict(x, verbose=0))


save(dotted.ScaleLayer(3.0), "dotted")
save(by_path.ScaleLayer(3.0), "by_path")
save(h5_layers.ScaleLayer(3.0), "h5_custom", ".h5")
save(never.ScaleLayer(3.0), "never")
save(keras.layers.Lambda(lambda t: t * 2.0), "lambda")
save(keras.layers.Lambda(lambda t: t * 2.0), "lambda_h5", ".h5")
'''


@pytest.fixture(scope="session")
def custom_files(tmp_path_factory) -> Path:
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("custom_models")
    package = root / "site" / "sgt_custom"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text(_LAYER_MODULE.format(package="sgt_dotted"))
    (root / "files").mkdir()
    (root / "files" / "sgt_file_layers.py").write_text(_LAYER_MODULE.format(package="sgt_path"))
    (root / "files" / "sgt_h5_layers.py").write_text(_LAYER_MODULE.format(package="sgt_h5"))
    (root / "files" / "sgt_never_layers.py").write_text(_LAYER_MODULE.format(package="sgt_never"))
    (root / "build.py").write_text(_BUILD_SCRIPT)
    done = subprocess.run([sys.executable, str(root / "build.py"), str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def _assert_predicts_as_saved(result, root: Path, name: str) -> None:
    x = np.load(root / "x.npy")
    (golden,) = export.golden_predictions(result.savedmodel_dir, {"features": x}).values()
    np.testing.assert_allclose(golden, np.load(root / f"{name}.npy"), rtol=1e-5, atol=1e-6)


def test_custom_layer_by_dotted_module_name(tmp_path, custom_files, monkeypatch):
    model = custom_files / "dotted.keras"
    with pytest.raises(export.MissingCustomObjectError) as info:
        export.export_model(model, tmp_path / "out")
    message = str(info.value)
    assert "'ScaleLayer'" in message and "--custom-objects MODULE" in message and str(model) in message
    assert "sgt_dotted>ScaleLayer" in message and "\n" not in message
    assert info.value.name == "ScaleLayer" and info.value.subject == str(model)
    assert not (tmp_path / "out").exists()

    monkeypatch.syspath_prepend(str(custom_files / "site"))
    result = export.export_model(model, tmp_path / "out", custom_modules=["sgt_custom.layers"])
    assert result.extra == {"custom_modules": ["sgt_custom.layers"], "unsafe_deserialization": False}
    _assert_predicts_as_saved(result, custom_files, "dotted")


@pytest.mark.parametrize("name,suffix", [("by_path", ".keras"), ("h5_custom", ".h5")])
def test_custom_layer_by_py_file_path(tmp_path, custom_files, name, suffix):
    model = custom_files / f"{name}{suffix}"
    with pytest.raises(export.MissingCustomObjectError, match=r"'ScaleLayer'.*--custom-objects MODULE"):
        export.export_model(model, tmp_path / "out")
    layers = custom_files / "files" / ("sgt_file_layers.py" if name == "by_path" else "sgt_h5_layers.py")
    result = export.export_model(model, tmp_path / "out", custom_modules=[str(layers)])
    _assert_predicts_as_saved(result, custom_files, name)


def test_module_that_registers_something_else_is_named(tmp_path, custom_files):
    other = tmp_path / "unrelated_layers.py"
    other.write_text("VALUE = 1\n")
    with pytest.raises(export.MissingCustomObjectError, match=r"none of the imported modules \(.*unrelated_layers"):
        export.export_model(custom_files / "never.keras", tmp_path / "out", custom_modules=[str(other)])


@pytest.mark.parametrize("name,suffix", [("lambda", ".keras"), ("lambda_h5", ".h5")])
def test_lambda_layer_needs_the_unsafe_opt_in(tmp_path, custom_files, name, suffix):
    model = custom_files / f"{name}{suffix}"
    with pytest.raises(export.UnsafeDeserializationError) as info:
        export.export_model(model, tmp_path / "out")
    message = str(info.value)
    assert "--unsafe-deserialization" in message and "arbitrary code" in message and "off by default" in message
    assert "Lambda" in message and str(model) in message and "safe_mode" not in message
    assert info.value.subject == str(model)
    assert not (tmp_path / "out").exists()

    result = export.export_model(model, tmp_path / "out", unsafe_deserialization=True)
    assert result.extra["unsafe_deserialization"] is True
    _assert_predicts_as_saved(result, custom_files, name)
    # the opt-in was for that one load: Keras's process-wide safe mode is still on
    with pytest.raises(export.UnsafeDeserializationError):
        export.export_model(model, tmp_path / "again")


def test_custom_module_that_fails_to_import_is_named(tmp_path, keras_files):
    broken = tmp_path / "broken_layers.py"
    broken.write_text("raise RuntimeError('layer registry exploded')\n")
    with pytest.raises(export.CustomObjectsImportError, match=r"broken_layers\.py.*RuntimeError: layer registry exploded"):
        export.export_model(keras_files["keras"], tmp_path / "out", custom_modules=[str(broken)])
    pkg = tmp_path / "site" / "sgt_needs_dep"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import sgt_not_installed_anywhere\n")
    import sys

    sys.path.insert(0, str(tmp_path / "site"))
    try:
        with pytest.raises(export.CustomObjectsImportError, match=r"sgt_needs_dep:.*ModuleNotFoundError.*sgt_not_installed"):
            export.export_model(keras_files["keras"], tmp_path / "out", custom_modules=["sgt_needs_dep"])
    finally:
        sys.path.remove(str(tmp_path / "site"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "spec,found", [("sgt_no_such_module", "no module named"), ("no_such_file.py", "no such file"), ("a-b", "not a module name")]
)
def test_custom_module_that_does_not_exist_is_refused_before_tensorflow(tmp_path, keras_files, spec, found):
    with pytest.raises(export.CustomObjectsImportError, match=f"--custom-objects {spec}: {found}"):
        export.check_load_options(keras_files["keras"], [spec])


def test_keras_loading_options_are_refused_for_a_savedmodel(tmp_path, tiny_savedmodel):
    with pytest.raises(export.LoadOptionNotApplicableError, match=r"--unsafe-deserialization applies to \.keras"):
        export.export_model(tiny_savedmodel, tmp_path / "out", unsafe_deserialization=True)
    with pytest.raises(export.LoadOptionNotApplicableError, match="--custom-objects applies"):
        export.export_model(tiny_savedmodel, tmp_path / "out", custom_modules=["json"])


def test_plain_model_loads_with_custom_modules_given(tmp_path, keras_files):
    result = export.export_model(keras_files["keras"], tmp_path / "out", custom_modules=["json"])
    assert result.extra["custom_modules"] == ["json"]


# ---- golden predictions, as the deploy pipeline uses them


@pytest.fixture(scope="session")
def two_output_savedmodel(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,), name="features", dtype="float32")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = {"score": keras.layers.Dense(1)(hidden), "prob": keras.layers.Dense(3, activation="softmax")(hidden)}
    return modelzoo.export(keras.Model(inputs, outputs), tmp_path_factory.mktemp("two") / "sm")


def test_golden_returns_every_output_and_batches_agree(two_output_savedmodel):
    x = modelzoo.reference_inputs(n_rows=23)
    whole = export.golden_predictions(two_output_savedmodel, {"features": x})
    assert sorted(whole) == sorted(export.read_signature(two_output_savedmodel).output_names)
    assert {name: arr.shape[0] for name, arr in whole.items()} == {name: 23 for name in whole}
    # an iterable of batches (e.g. Reference.batches(n)), each cut again into batch_size rows
    batches = ({"features": x[i : i + 10]} for i in range(0, 23, 10))
    batched = export.golden_predictions(two_output_savedmodel, batches, batch_size=4)
    for name in whole:
        np.testing.assert_allclose(batched[name], whole[name], rtol=1e-5, atol=1e-6)


def test_golden_with_no_rows_has_the_output_shapes(two_output_savedmodel):
    empty = export.golden_predictions(two_output_savedmodel, {"features": np.zeros((0, 4), "float32")})
    signature = export.read_signature(two_output_savedmodel)
    assert {name: arr.shape for name, arr in empty.items()} == {
        t.name: (0,) + tuple(t.shape[1:]) for t in signature.outputs
    }


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_golden_refuses_a_bad_batch_size(tiny_savedmodel, batch_size):
    with pytest.raises(ExportError, match=f"batch_size {batch_size}"):
        export.golden_predictions(tiny_savedmodel, {"features": np.zeros((2, 4), "float32")}, batch_size=batch_size)


def test_golden_refuses_inputs_of_different_lengths(two_output_savedmodel, tmp_path):
    import keras

    a, b = keras.Input((2,), name="a"), keras.Input((2,), name="b")
    sm = modelzoo.export(keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b]))), tmp_path / "sm")
    with pytest.raises(ExportError, match="different row counts"):
        export.golden_predictions(sm, {"a": np.zeros((3, 2), "float32"), "b": np.zeros((2, 2), "float32")})


_CWD_SCRIPT = '''
import json, sys
from servegate import export

model, module = sys.argv[1], sys.argv[2]
try:
    export.export_model(model, "out-missing")
    print(json.dumps({"missing": None}))
except export.MissingCustomObjectError as exc:
    print(json.dumps({"missing": str(exc)}))
result = export.export_model(model, "out", custom_modules=[module])
print(json.dumps({"outputs": result.signature.output_names, "cwd_on_path": "" in sys.path}))
'''


def test_dotted_module_is_found_in_the_current_directory_as_users_run_it(tmp_path, custom_files):
    """`servegate` (a console script) runs without the current directory on sys.path;
    a user's `--custom-objects mylayers` in their project folder must still import."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(custom_files / "files" / "sgt_never_layers.py", project / "sgt_cwd_layers.py")
    shutil.copy(custom_files / "never.keras", project / "model.keras")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # -I: like the console script, no current directory and no PYTHONPATH on sys.path
    done = subprocess.run(
        [sys.executable, "-I", "-c", _CWD_SCRIPT, "model.keras", "sgt_cwd_layers"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    first, second = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert "'ScaleLayer'" in first["missing"] and "--custom-objects MODULE" in first["missing"]
    # -I also drops PYTHONPATH: the export ran from the installed servegate (its names are tested below)
    assert len(second["outputs"]) == 1 and second["cwd_on_path"] is False
    assert (project / "out" / "saved_model.pb").is_file()


def test_keras_output_layer_names_are_the_serving_names(tmp_path):
    """Clients read output names in TF Serving's answers: a layer named ``prob`` is served as ``prob``,
    not Keras's ``output_0``; an output whose layer Keras named itself keeps Keras's ``output_<i>``."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(3)(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid", name="prob")(hidden),
                               keras.layers.Dense(2)(hidden)])
    two.save(tmp_path / "two.keras")
    result = export.export_model(tmp_path / "two.keras", tmp_path / "two")
    assert result.signature.output_names == ["output_1", "prob"]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    golden = export.golden_predictions(tmp_path / "two", {"features": x})
    np.testing.assert_allclose(golden["prob"], two.predict(x, verbose=0)[0], rtol=1e-5)

    seq = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(1, name="score")])
    seq.save(tmp_path / "seq.keras")
    assert export.export_model(tmp_path / "seq.keras", tmp_path / "seq").signature.output_names == ["score"]
