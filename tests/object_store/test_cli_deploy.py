"""``servegate deploy --store s3://...`` end to end, as CI runs it (a subprocess, a brand-new HOME), against a
real SeaweedFS: deploy, deploy again (a new version), rollback, status; MLflow's champion follows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servegate.object_store import ObjectModelStore
from servegate.object_store import production as p

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SERVEGATE_", "MLFLOW_", "PREFECT_API"))}
    full.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PYTHONPATH=str(REPO_ROOT),
                PREFECT_SERVER_ANALYTICS_ENABLED="false", **env)
    return subprocess.run([sys.executable, "-m", "servegate", *args], capture_output=True, text=True, env=full,
                          cwd=home, timeout=400)


@pytest.fixture
def hp2_files(tmp_path, half_plus_two) -> tuple[Path, Path]:
    model = tmp_path / "hp2"
    shutil.copytree(half_plus_two, model)
    reference = tmp_path / "hp2.parquet"
    x = np.linspace(0, 1, 16, dtype="float32")
    pd.DataFrame({"x": x, "label": 0.5 * x + 2}).to_parquet(reference)
    return model, reference


@pytest.mark.reliability  # three minutes: three flow runs with a canary each
def test_deploy_deploy_again_rollback_status(tmp_path, seaweed, s3_location, hp2_files):
    home = tmp_path / "home"
    home.mkdir()
    model, reference = hp2_files
    env = seaweed.env()
    deploy = ["deploy", "--model", str(model), "--name", "hp2", "--reference", str(reference),
              "--store", s3_location.uri, "--json"]
    first = run_cli(home, *deploy, env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    assert json.loads(first.stdout)["verdict"] == "promoted"
    again = run_cli(home, *deploy, "--force-new-version", env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    outcome = json.loads(again.stdout)
    assert (outcome["verdict"], outcome["version"], outcome["store"]) == ("promoted", 2, s3_location.uri)
    for result in (first, again):
        assert "Traceback" not in result.stderr, result.stderr[-4000:]

    store = ObjectModelStore.open(s3_location, client=seaweed.client())
    state, _ = p.read_production(store.client, s3_location, "hp2")
    assert state.served == [1, 2]
    assert {f.path for f in store.manifest("hp2", 2).files} >= {"saved_model.pb"}

    back = run_cli(home, "rollback", "--name", "hp2", "--store", s3_location.uri, "--json", env=env)
    assert back.returncode == 0, back.stderr[-4000:]
    rolled = json.loads(back.stdout)
    assert (rolled["from_version"], rolled["to_version"], rolled["rejected"]) == (2, 1, [2])
    assert rolled["champion_registry_version"] is not None  # MLflow followed production

    shown = run_cli(home, "status", "--name", "hp2", "--store", s3_location.uri, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    # version 2 left production and no node reports it: the rollback deleted its files (its record stays)
    assert status["serving_version"] == 1 and status["served"] == [1] and status["published"] == [1]
    assert store.manifest("hp2", 2) is None and store.manifest("hp2", 1) is not None
    assert status["rejected_reasons"] == {"2": "rolled back from the command line"}
    assert [h["operation"] for h in status["history"]] == ["promote", "promote", "rollback"]
    assert not (home / "s3:").exists()


def test_deploy_refuses_a_missing_bucket_before_any_run(tmp_path, seaweed, hp2_files):
    home = tmp_path / "home"
    home.mkdir()
    model, reference = hp2_files
    result = run_cli(home, "deploy", "--model", str(model), "--name", "hp2", "--reference", str(reference),
                     "--store", "s3://no-such-bucket/store", "--json", env=seaweed.env())
    assert result.returncode == 2, result.stderr[-3000:]
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "NoSuchBucket" and "does not exist" in error["message"]
    assert not (home / ".servegate" / "mlflow.db").exists() and not (home / ".prefect" / "prefect.db").exists()
