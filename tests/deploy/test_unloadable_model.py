"""A model the canary's model server cannot load is a rejection, not a crash.

The model: a ``tf.Module`` saved with ``SaveOptions(experimental_skip_saver=True)``.
``tf.saved_model.load`` restores its variable through the object graph, so the
export and the golden predictions run; TensorFlow Serving's loader (the TF1
``LoadSavedModel`` path the bundled server follows) restores variables through
the MetaGraph's saver, which is not there, and the warm-up request fails with
``Could not find variable w``. The same module saved normally is the passing twin.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from servegate.deploy.canary import CANARY_LOG_ARTIFACT, load_rejection
from servegate.deploy.record import AttemptRecord, DeployRequest
from servegate.serving.runners.errors import ModelLoadError, load_failure
from tests.support.cli import run_servegate
NAME = "unloadable"

# What the bundled server logs for such a version (a real line, its log prefix shortened).
SERVER_LOG = (
    "Loading servable version {name: unloadable version: 2} from /s/2\n"
    "E servegate.serving: Loading servable {name: unloadable version: 2} failed (attempt 1 of 1): "
    "Could not find variable w. This could mean that the variable has been deleted.\n"
    "\t [[{{node MatMul/ReadVariableOp}}]]\n"
    "E servegate.serving: Failed to start server. Error: Loading servable {name: unloadable version: 2} failed: "
    "FAILED_PRECONDITION: Could not find variable w.\n"
)


def _record(version: int, tmp_path: Path) -> AttemptRecord:
    request = DeployRequest(model_path="m", name=NAME, reference="r", store_root=str(tmp_path / "store"))
    return AttemptRecord(request=request, work_dir=str(tmp_path), version=version, previous_production=1)


def test_a_load_failure_of_the_candidate_is_its_rejection(tmp_path):
    assert load_failure(SERVER_LOG, NAME).version == 2
    assert load_failure(SERVER_LOG, "other") is None
    exc = ModelLoadError("model server exited with code 1 before its versions became AVAILABLE")
    exc.server_log = SERVER_LOG
    judged = load_rejection(_record(2, tmp_path), exc)
    assert judged.validation_verdict == "failed"
    [reason] = judged.reasons
    assert reason.startswith("load: the canary's model server could not load version 2: Could not find variable w.")
    assert "\n" not in reason and CANARY_LOG_ARTIFACT in reason
    # production's version failing in the canary is not the candidate's verdict: an error stays an error
    assert load_rejection(_record(3, tmp_path), exc) is None
    tf_serving = "Loading servable: {name: unloadable version: 3} failed: NOT_FOUND: Could not find variable w\n"
    assert load_failure(tf_serving, NAME).cause == "NOT_FOUND: Could not find variable w"


_BUILD = '''
import sys
import numpy as np
import pandas as pd
import tensorflow as tf

class Linear(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable([[2.0], [1.0], [0.5], [0.25]], name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def serve(self, features):
        return {"prediction": tf.matmul(features, self.w)}

root = sys.argv[1]
module = Linear()
tf.saved_model.save(module, f"{root}/good", signatures={"serving_default": module.serve})
tf.saved_model.save(module, f"{root}/unloadable", signatures={"serving_default": module.serve},
                    options=tf.saved_model.SaveOptions(experimental_skip_saver=True))
x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
pd.DataFrame({"features": list(x)}).to_parquet(f"{root}/reference.parquet")
'''


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tfmodule")
    (root / "build.py").write_text(_BUILD)
    done = subprocess.run([sys.executable, str(root / "build.py"), str(root)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def servegate(home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_servegate(*args, home=home, timeout=500)


def _artifact(home: Path, run_id: str, path: str) -> Path:
    """The run's artifact file (MLflow's default artifact root sits beside the SQLite database)."""
    db = home / ".servegate" / "mlflow.db"
    with sqlite3.connect(db) as conn:
        (uri,) = conn.execute("select artifact_uri from runs where run_uuid = ?", (run_id,)).fetchone()
        tags = dict(conn.execute("select key, value from tags where run_uuid = ?", (run_id,)).fetchall())
    assert tags.get("servegate.verdict") == "rejected", tags
    return Path(uri.removeprefix("file://")) / path


@pytest.mark.reliability  # two whole deploys through the CLI (about two minutes on a busy machine)
def test_a_model_the_server_cannot_load_is_rejected_through_the_cli(modules, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    common = ["--name", NAME, "--reference", str(modules / "reference.parquet"), "--json"]

    good = servegate(home, "deploy", "--model", str(modules / "good"), *common)
    assert good.returncode == 0, good.stderr[-3000:]
    assert json.loads(good.stdout)["verdict"] == "promoted"

    bad = servegate(home, "deploy", "--model", str(modules / "unloadable"), *common)
    assert bad.returncode == 1, (bad.stdout, bad.stderr[-3000:])
    outcome = json.loads(bad.stdout)
    assert outcome["verdict"] == "rejected" and outcome["version"] == 2 and outcome["production_version"] == 1
    [reason] = outcome["reasons"]
    assert "Could not find variable w" in reason and "\n" not in reason and len(reason) < 600, reason
    assert "Traceback" not in bad.stderr and "server log (last lines)" not in bad.stdout + bad.stderr

    log = _artifact(home, outcome["mlflow_run_id"], CANARY_LOG_ARTIFACT).read_text()
    assert "Could not find variable w" in log

    status = servegate(home, "status", "--name", NAME)
    assert status.returncode == 0, status.stderr
    [line] = [x for x in status.stdout.splitlines() if x.strip().startswith("2:")]
    assert "Could not find variable w" in line
    assert "--- server log" not in status.stdout and len(line) < 700, status.stdout
