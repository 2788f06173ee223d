"""``servegate deploy`` as CI runs it: a real subprocess, exit codes and --json.

Promoted and rejected run the whole flow against the session's Prefect test
server (``PREFECT_API_URL``), so the test can read the flow run's state and
artifacts back; each error kind is refused before anything starts.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_servegate

NAME = "diabetes"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, prefect_harness, tracking_uri) -> dict:
    from prefect.settings import PREFECT_API_URL

    home = tmp_path_factory.mktemp("home")
    return dict(
        HOME=str(home),
        SERVEGATE_HOME=str(home),
        SERVEGATE_STORE=str(home / "store"),
        MLFLOW_TRACKING_URI=tracking_uri,
        PREFECT_API_URL=PREFECT_API_URL.value(),
    )


def servegate(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``servegate ARGS`` from the checkout, in the HOME and with the settings of ``env`` (``cli_env``)."""
    return run_servegate(*args, home=Path(env["HOME"]), env=env, cwd=REPO, timeout=timeout)


def _flow_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


# Long (a whole deploy): CI's second step runs it with the rejected deploy below, which builds on it.
@pytest.mark.reliability
@pytest.mark.slow
def test_promoted_exits_0_with_json(cli_env, demo_files):
    files = demo_files["baseline"]
    started = time.monotonic()
    result = servegate(cli_env, "deploy", "--model", str(files.model_path), "--name", "cli-" + NAME,
                       "--reference", str(files.reference_path), "--json")
    waited = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout)
    assert outcome["verdict"] == "promoted" and outcome["version"] == 1 and outcome["reasons"] == []
    # wall_s and startup_s count from the process's start: imports before the first step, every step
    # after it (the flow's steps follow the preflight ones), all within what the caller waited
    assert 0 < outcome["startup_s"] < outcome["wall_s"] <= waited, (outcome["startup_s"], outcome["wall_s"], waited)
    assert outcome["startup_s"] + sum(outcome["timings"].values()) <= outcome["wall_s"], outcome
    # The export ran in the preflight and counts there (the flow's step reused it); the phases add up to wall_s.
    assert outcome["timings"]["export_model"] > 0.05, outcome["timings"]
    phases = outcome["phases"]
    assert list(phases) == ["start_s", "preflight_s", "imports_and_prefect_s", "flow_s"], phases
    assert all(v >= 0 for v in phases.values()) and phases["preflight_s"] >= outcome["timings"]["export_model"]
    assert abs(sum(phases.values()) - outcome["wall_s"]) < 1.0, (phases, outcome["wall_s"])
    assert any(k.startswith("parity.") for k in outcome["figures"]) and outcome["figures"]["quality.mae"] > 0
    assert outcome["mlflow_run_id"] and outcome["prefect_flow_run_id"]
    run = _flow_run(outcome["prefect_flow_run_id"])
    assert run.state.is_completed()
    assert (Path(cli_env["SERVEGATE_STORE"]) / "production" / f"cli-{NAME}" / "1" / "saved_model.pb").is_file()

    # MLflow: a FINISHED run with the figures and the report; v1 registered, champion and challenger
    from servegate.tracking import Tracker

    tracker = Tracker(cli_env["MLFLOW_TRACKING_URI"])
    mlrun = tracker.client.get_run(outcome["mlflow_run_id"])
    assert mlrun.info.status == "FINISHED" and mlrun.data.metrics["quality.mae"] == outcome["figures"]["quality.mae"]
    logged = {a.path for a in tracker.client.list_artifacts(outcome["mlflow_run_id"], "report")}
    assert {"report/report.md", "report/report.json"} <= logged
    assert {a.path for a in tracker.client.list_artifacts(outcome["mlflow_run_id"])} >= {"savedmodel", "report"}
    champion = tracker.alias_version(f"cli-{NAME}", "champion")
    assert champion.tags["serving_version"] == "1" and champion.tags["verdict"] == "passed"
    assert champion.source.endswith("/artifacts/savedmodel") and champion.run_id == outcome["mlflow_run_id"]
    assert str(tracker.alias_version(f"cli-{NAME}", "challenger").version) == str(champion.version)

    # Prefect: the report, the version table (keyed) and the plots as artifacts of this flow run
    from tests.flows.test_deploy_flow import read_artifacts

    arts = read_artifacts(outcome["prefect_flow_run_id"])
    assert "PROMOTED" in arts[f"cli-{NAME}-validation-report"].data
    assert arts[f"cli-{NAME}-versions"].type == "table"
    assert "data:image/png;base64," in arts[f"cli-{NAME}-plots"].data


# Long (a whole deploy or more): CI's second step runs it (-m reliability); the default suite stays under 10 minutes.
@pytest.mark.reliability
@pytest.mark.slow
def test_rejected_exits_1_with_reasons(cli_env, demo_files):
    files = demo_files["broken"]
    result = servegate(cli_env, "deploy", "--model", str(files.model_path), "--name", "cli-" + NAME,
                       "--reference", str(files.reference_path), "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    outcome = json.loads(result.stdout)
    assert outcome["verdict"] == "rejected" and outcome["version"] == 2
    assert outcome["reasons"] and outcome["production_version"] == 1
    run = _flow_run(outcome["prefect_flow_run_id"])
    assert run.state.is_failed() and outcome["reasons"][0] in run.state.message
    store = Path(cli_env["SERVEGATE_STORE"])
    assert not (store / "staging" / f"cli-{NAME}" / "2").exists()
    assert (store / "rejected" / f"cli-{NAME}" / "2").is_dir()
    assert (store / "production" / f"cli-{NAME}" / "1").is_dir()

    from servegate.tracking import Tracker

    tracker = Tracker(cli_env["MLFLOW_TRACKING_URI"])
    assert tracker.client.get_run(outcome["mlflow_run_id"]).info.status == "FAILED"
    assert tracker.alias_version(f"cli-{NAME}", "champion").tags["serving_version"] == "1"
    challenger = tracker.alias_version(f"cli-{NAME}", "challenger")
    assert challenger.tags["serving_version"] == "2" and challenger.tags["verdict"] == "failed"
    assert outcome["reasons"][0] in challenger.tags["reasons"]

    from tests.flows.test_deploy_flow import read_artifacts

    assert "REJECTED" in read_artifacts(outcome["prefect_flow_run_id"])[f"cli-{NAME}-validation-report"].data


def test_missing_model_exits_2(cli_env, demo_files, tmp_path):
    result = servegate(cli_env, "deploy", "--model", str(tmp_path / "gone.keras"), "--name", NAME,
                       "--reference", str(demo_files["baseline"].reference_path), "--json")
    assert result.returncode == 2
    assert "gone.keras" in result.stderr and "model not found" in result.stderr
    error = json.loads(result.stdout)["error"]  # --json: one object on stdout, errors included
    assert error["kind"] == "ModelFileMissingError" and "gone.keras" in error["message"]


def test_missing_reference_exits_2(cli_env, demo_files, tmp_path):
    result = servegate(cli_env, "deploy", "--model", str(demo_files["baseline"].model_path), "--name", NAME,
                       "--reference", str(tmp_path / "ref.parquet"))
    assert result.returncode == 2
    assert "ref.parquet" in result.stderr and "no such file" in result.stderr


def test_unreachable_prefect_api_exits_2(cli_env, demo_files, closed_port_url):
    env = dict(cli_env, PREFECT_API_URL=closed_port_url + "/api")
    files = demo_files["baseline"]
    result = servegate(env, "deploy", "--model", str(files.model_path), "--name", NAME,
                       "--reference", str(files.reference_path))
    assert result.returncode == 2
    assert "Prefect API not reachable" in result.stderr and closed_port_url in result.stderr


def test_unreachable_docker_exits_2(cli_env, demo_files, tmp_path):
    env = dict(cli_env, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    files = demo_files["baseline"]
    result = servegate(env, "deploy", "--model", str(files.model_path), "--name", NAME,
                       "--reference", str(files.reference_path), "--serving", "docker")
    assert result.returncode == 2
    assert "Docker engine not reachable" in result.stderr and "--serving process" in result.stderr


def test_bad_config_exits_2_naming_the_field(cli_env, demo_files, tmp_path):
    config = tmp_path / "v.yaml"
    config.write_text("parity:\n  atol: -1\n")
    files = demo_files["baseline"]
    result = servegate(cli_env, "deploy", "--model", str(files.model_path), "--name", NAME,
                       "--reference", str(files.reference_path), "--config", str(config))
    assert result.returncode == 2
    assert "parity.atol" in result.stderr


# A sitecustomize that makes the report's plots fail in the servegate process only (the one that imports
# servegate.validation.tables), after the verdict: the side work beside the promotion fails for real.
_FAILING_PLOTS = '''
import importlib.abc, sys

class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "servegate.validation.tables":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)

            def draw_plots(*args, **kwargs):
                raise OSError("disk full while drawing the plots")
            module.draw_plots = draw_plots
        spec.loader.exec_module = exec_module
        return spec

import importlib.util
sys.meta_path.insert(0, _Patch())
'''


# Long (a whole deploy): CI's second step.
@pytest.mark.reliability
@pytest.mark.slow
def test_a_report_that_fails_beside_the_promotion_fails_the_deploy_and_rolls_production_back(
        cli_env, demo_files, tmp_path):
    from tests.support.cli import checkout_pythonpath

    (tmp_path / "sitecustomize.py").write_text(_FAILING_PLOTS)
    env = {**cli_env, "PYTHONPATH": f"{tmp_path}:{checkout_pythonpath()}"}
    files = demo_files["baseline"]
    name = "cli-report-" + NAME
    result = servegate(env, "deploy", "--model", str(files.model_path), "--name", name,
                       "--reference", str(files.reference_path), "--json")
    assert result.returncode == 2, result.stderr[-3000:]
    outcome = json.loads(result.stdout)
    assert outcome["error"]["kind"] == "ReportError", outcome
    assert "disk full while drawing the plots" in outcome["error"]["message"]
    store = Path(cli_env["SERVEGATE_STORE"])
    assert not any((store / "production" / name).glob("[0-9]*"))  # the promotion was rolled back
    assert (store / "rejected" / name / "1").is_dir()
