"""The scheduled ``deploy-newest-export`` flow on an ``s3://`` store, run in a subprocess with a brand-new HOME
(Prefect's own ephemeral API, as a fresh worker machine has) against a real SeaweedFS: production's last
promotion is read from production.json, a newer export is deployed into the bucket, and a bucket that
cannot be used fails the run before the folder is judged. The same decisions in this process, on the
session's Prefect test harness, keep them in the default suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servegate.object_store import production as p

REPO_ROOT = Path(__file__).resolve().parents[2]
_RUN = ("import json, sys; from servegate.flows.watch import deploy_newest_export; "
        "state = deploy_newest_export(**json.loads(sys.argv[1]), return_state=True); "
        "print(json.dumps({'type': state.type.value, 'message': state.message, "
        "'result': state.result(raise_on_failure=False) if state.is_completed() else None}))")


def run_flow(home: Path, seaweed, parameters: dict, **extra_env: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SERVEGATE_", "MLFLOW_", "PREFECT_API", "PREFECT_HOME"))}
    env.update(seaweed.env(), HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PYTHONPATH=str(REPO_ROOT),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2", **extra_env)
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(parameters)], capture_output=True, text=True,
                          env=env, cwd=home, timeout=500)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture
def exports(tmp_path, half_plus_two) -> Path:
    """A watched folder holding one SavedModel export (TF Serving's half_plus_two) and its reference data."""
    folder = tmp_path / "exports"
    folder.mkdir()
    shutil.copytree(half_plus_two, folder / "hp2")
    x = np.linspace(0, 1, 16, dtype="float32")
    pd.DataFrame({"x": x, "label": 0.5 * x + 2}).to_parquet(tmp_path / "hp2.parquet")
    return folder


@pytest.mark.reliability  # Prefect's ephemeral API starting on a brand-new HOME: about 50 s on a busy machine
@pytest.mark.parametrize("by_variable", [False, True])
def test_an_export_older_than_the_last_promotion_in_the_bucket_is_not_deployed(tmp_path, seaweed, s3_store,
                                                                                half_plus_two, exports, by_variable):
    stamp = time.time() - 3600
    os.utime(exports / "hp2", (stamp, stamp))
    s3_store.promote("hp2", s3_store.stage("hp2", half_plus_two).version)
    uri = s3_store.location.uri
    parameters = {"name": "hp2", "watch_dir": str(exports), **({} if by_variable else {"store": uri})}
    outcome, stderr = run_flow(tmp_path, seaweed, parameters, **({"SERVEGATE_STORE": uri} if by_variable else {}))
    assert outcome["type"] == "COMPLETED", (outcome, stderr[-3000:])
    assert outcome["result"] == {"deployed": False, "reason": "not newer than production",
                                 "model_path": str(exports / "hp2")}
    assert p.read_production(s3_store.client, s3_store.location, "hp2")[0].served == [1]
    assert not (tmp_path / "s3:").exists() and "Traceback" not in stderr


@pytest.mark.reliability  # as above
def test_a_bucket_that_does_not_exist_fails_the_run_before_the_folder_is_judged(tmp_path, seaweed):
    outcome, _ = run_flow(tmp_path, seaweed, {"name": "hp2", "watch_dir": str(tmp_path / "nowhere"),
                                              "store": "s3://no-such-bucket/store"})
    assert outcome["type"] == "FAILED" and "bucket 'no-such-bucket' does not exist" in outcome["message"], outcome


@pytest.mark.reliability  # a whole deploy: the canary, validation, MLflow
def test_a_newer_export_is_deployed_into_the_bucket(tmp_path, seaweed, s3_store, exports):
    outcome, stderr = run_flow(tmp_path, seaweed, {"name": "hp2", "watch_dir": str(exports),
                                                   "reference": str(tmp_path / "hp2.parquet"),
                                                   "store": s3_store.location.uri})
    assert outcome["type"] == "COMPLETED", (outcome, stderr[-4000:])
    assert (outcome["result"]["verdict"], outcome["result"]["version"]) == ("promoted", 1), outcome
    state, _ = p.read_production(s3_store.client, s3_store.location, "hp2")
    assert state.served == [1] and s3_store.manifest("hp2", 1) is not None
    assert not (tmp_path / "s3:").exists()


def _in_process(seaweed, monkeypatch, **parameters):
    from servegate.flows.watch import deploy_newest_export

    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    return deploy_newest_export(**parameters, return_state=True)


def test_in_process_the_last_promotion_comes_from_production_json(tmp_path, seaweed, s3_store, half_plus_two,
                                                                   exports, prefect_harness, monkeypatch):
    from servegate.flows.watch import last_promotion_time
    from servegate.object_store.mirror import open_model_store

    stamp = time.time() - 3600
    os.utime(exports / "hp2", (stamp, stamp))
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    mirrored = open_model_store(s3_store.location)
    assert last_promotion_time(mirrored, "hp2") is None
    s3_store.promote("hp2", s3_store.stage("hp2", half_plus_two).version)
    assert last_promotion_time(mirrored, "hp2").timestamp() > stamp
    state = _in_process(seaweed, monkeypatch, name="hp2", watch_dir=str(exports), store=s3_store.location.uri)
    assert state.result() == {"deployed": False, "reason": "not newer than production",
                              "model_path": str(exports / "hp2")}


def test_in_process_a_missing_bucket_fails_before_the_folder(tmp_path, seaweed, prefect_harness, monkeypatch):
    state = _in_process(seaweed, monkeypatch, name="hp2", watch_dir=str(tmp_path / "nowhere"),
                        store="s3://no-such-bucket/store")
    assert state.is_failed() and "bucket 'no-such-bucket' does not exist" in state.message, state.message
