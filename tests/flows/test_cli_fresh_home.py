"""``servegate deploy`` as a new user meets it: a subprocess with a brand-new HOME.

No ``~/.prefect``, no ``~/.servegate``, no MLflow database, no PREFECT_API_URL or
MLFLOW_TRACKING_URI: the command must start its own Prefect on a first run,
create its MLflow store, load a model with a custom layer when told which
module registers it, and keep the terminal quiet (servegate's progress and the
verdict; library output goes to a log file whose path it prints). Bad input is
refused before any run is opened, with ``--json`` printing the error as one object.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests import modelzoo
from tests.support.cli import REPO, assert_nothing_opened, run_servegate

NAME = "fresh"

_LAYER = modelzoo.CUSTOM_LAYER_MODULE.format(package="fresh_home")

_BUILD = '''
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd

root = Path(sys.argv[1])
sys.path.insert(0, str(root))
from scale_layer import ScaleLayer

keras.utils.set_random_seed(0)
inputs = keras.Input(shape=(4,), name="features", dtype="float32")
model = keras.Model(inputs, keras.layers.Dense(1, name="prediction")(ScaleLayer(3.0)(inputs)))
model.save(root / "custom.keras")
x = np.random.default_rng(3).normal(size=(64, 4)).astype("float32")
pd.DataFrame({"features": list(x)}).to_parquet(root / "reference.parquet")
'''

# What the libraries print that a user should not have to read (issue 10, item 7).
NOISE = re.compile(r"cuInit|cuda|absl|^[IWE]\d{4} |Running upgrade|alembic|View at|Starting temporary server"
                   r"|Traceback|Beginning flow run|Created task run|Finished in state", re.M)


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory) -> Path:
    """A Keras file with a custom layer, saved by another process (as a training script would)."""
    root = tmp_path_factory.mktemp("custom")
    (root / "scale_layer.py").write_text(_LAYER)
    (root / "build.py").write_text(_BUILD)
    done = subprocess.run([sys.executable, str(root / "build.py"), str(root)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def servegate(home: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The installed ``servegate`` script, TensorFlow's own log level left as a user's shell has it."""
    return run_servegate(*args, home=home, env={"TF_CPP_MIN_LOG_LEVEL": None}, cwd=cwd, timeout=400, script=True)


def _log_path(stderr: str) -> Path:
    found = re.search(r"^library output: (\S+)$", stderr, re.M)
    assert found, stderr
    return Path(found.group(1))


@pytest.mark.slow
def test_first_deploy_on_a_brand_new_home(custom_model, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    model, reference = custom_model / "custom.keras", custom_model / "reference.parquet"

    missing = servegate(home, "deploy", "--model", str(model), "--name", NAME, "--reference", str(reference),
                        "--json")
    assert missing.returncode == 2, missing.stderr[-3000:]
    error = json.loads(missing.stdout)["error"]
    assert error["kind"] == "MissingCustomObjectError" and error["subject"] == str(model)
    last = missing.stderr.strip().splitlines()[-1]
    assert "ScaleLayer" in last and "--custom-objects" in last

    done = servegate(home, "deploy", "--model", str(model), "--name", NAME, "--reference", str(reference),
                     "--custom-objects", "scale_layer.py", cwd=custom_model)
    assert done.returncode == 0, done.stderr[-3000:]
    # The reference has no labels: the verdict says the promotion judged no quality, and why.
    verdict = done.stdout.splitlines()[0]
    assert verdict.startswith(f"{NAME}: version 1 promoted without a quality check: "), verdict
    assert "quality: the reference has no label column 'label'" in verdict, verdict
    assert "  outputs validated: prediction (regression)" in done.stdout.splitlines()
    assert "validate: verdict passed" in done.stderr and "promote: version 1" in done.stderr
    # The local Prefect server's warm-up only read: the deploy's flow and its one flow run are all a user sees.
    with closing(sqlite3.connect(home / ".prefect" / "prefect.db")) as db:
        assert db.execute("select name from flow").fetchall() == [("deploy-model",)]
        assert db.execute("select count(*) from flow_run").fetchone() == (1,)
    assert not NOISE.search(done.stdout + done.stderr), done.stdout + done.stderr
    log = _log_path(done.stderr)
    assert log.is_file() and log.is_relative_to(home / ".servegate" / "logs")
    # every run of a model gets its own Prefect run name (issue 10, item 9)
    assert re.search(rf"Beginning flow run 'deploy-{NAME}-\d{{8}}-\d{{6}}'", log.read_text())
    assert (home / ".servegate" / "store" / "production" / NAME / "1" / "saved_model.pb").is_file()
    assert (home / ".servegate" / "mlflow.db").is_file()
    # The Keras output layer's name is the served name (Keras alone would export output_0).
    from servegate import export

    assert export.read_signature(home / ".servegate" / "store" / "production" / NAME / "1").output_names == [
        "prediction"]


BAD_INPUTS = {
    # name: (how to make the reference or config, what the last line must say)
    "missing column": ("missing_column", r"reference file \S+missing\.parquet: .*features.*Columns present: x"),
    "wrong dtype": ("wrong_dtype", r"reference file \S+strings\.parquet: .*features"),
    "0 rows": ("empty", r"reference file \S+empty\.parquet: 0 rows"),
    "output not in model": ("bad_output", r"servegate\.yaml: field 'output': 'prob' is not an output of the model \(outputs: output_0\)"),
}


def _bad_input(kind: str, tmp_path: Path, good_reference: Path) -> list[str]:
    import pandas as pd

    if kind == "missing_column":
        path = tmp_path / "missing.parquet"
        pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(path)
        return ["--reference", str(path)]
    if kind == "wrong_dtype":
        path = tmp_path / "strings.parquet"
        pd.DataFrame({"features": ["a", "b"]}).to_parquet(path)
        return ["--reference", str(path)]
    if kind == "empty":
        path = tmp_path / "empty.parquet"
        pd.DataFrame({"features": pd.Series([], dtype=object)}).to_parquet(path)
        return ["--reference", str(path)]
    config = tmp_path / "servegate.yaml"
    config.write_text("output: prob\n")
    return ["--reference", str(good_reference), "--config", str(config)]


# One case in the default suite (refused before the export: seconds); the other three in CI's second step.
@pytest.mark.parametrize("case", [pytest.param(c, marks=() if c == "missing column" else pytest.mark.reliability)
                                  for c in BAD_INPUTS])
def test_bad_input_is_refused_before_any_run(case, tiny_savedmodel, tmp_path):
    import pandas as pd

    home = tmp_path / "home"
    home.mkdir()
    good = tmp_path / "good.parquet"
    pd.DataFrame({"features": list(modelzoo.reference_inputs(8))}).to_parquet(good)
    kind, expected = BAD_INPUTS[case]
    result = servegate(home, "deploy", "--model", str(tiny_savedmodel), "--name", NAME, "--json",
                       *_bad_input(kind, tmp_path, good))
    assert result.returncode == 2, result.stderr[-3000:]
    error = json.loads(result.stdout)["error"]  # one JSON object on stdout, even for an error
    assert error["kind"] and error["message"] and error["subject"]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(expected, last), last
    assert "Traceback" not in result.stderr
    # no run was opened: no MLflow store, no Prefect flow run, nothing in the model store
    assert not (home / ".servegate" / "mlflow.db").exists()
    assert not (home / ".servegate" / "store" / "staging").exists()
    assert_nothing_opened(home)
