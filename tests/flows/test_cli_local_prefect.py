"""``servegate deploy`` with no PREFECT_API_URL: its own local Prefect server, and a fast exit that loses nothing.

The command starts the local Prefect server before its heavy imports and ends
its process without the interpreter's teardown once the outcome is printed.
This test runs it as CI would (a subprocess, no Prefect API configured),
then starts a Prefect server on the same database and reads back what the
command wrote: the flow run Completed, its artifacts, and its very last log
line (written just before the flow returned, so it reached the API only if
the log worker drained before the exit). MLflow's run is FINISHED, and no
server the command started (Prefect's, the canary, a spare) outlives it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_servegate

# Long (a whole deploy or more): CI's second step runs it (-m reliability); the default suite stays under 10 minutes.
pytestmark = [pytest.mark.slow, pytest.mark.reliability]

NAME = "local-prefect"


def _processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment contains ``marker`` (this test's PREFECT_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def test_deploy_on_its_own_local_prefect_loses_nothing(demo_files, tmp_path):
    files = demo_files["baseline"]
    prefect_home = tmp_path / "prefect-home"
    db_url = f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}"
    env = dict(
        SERVEGATE_HOME=str(tmp_path / "home"), SERVEGATE_STORE=str(tmp_path / "store"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        PREFECT_HOME=str(prefect_home), PREFECT_SERVER_DATABASE_CONNECTION_URL=db_url,
        PREFECT_LOGGING_LEVEL="INFO", TMPDIR=str(tmp_path),
    )
    result = run_servegate("deploy", "--model", str(files.model_path), "--name", NAME, "--reference",
                           str(files.reference_path), "--json", home=tmp_path / "user-home", env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout)  # stdout is the JSON object alone
    assert outcome["verdict"] == "promoted" and outcome["prefect_flow_run_id"]
    assert not _processes_with_env(str(prefect_home)), "a server started by the command outlived it"
    assert not list(tmp_path.glob("servegate-canary-*")), "a canary work dir outlived the command"

    from servegate.tracking import Tracker

    assert Tracker(env["MLFLOW_TRACKING_URI"]).client.get_run(outcome["mlflow_run_id"]).info.status == "FINISHED"

    # Read back what the command wrote to its Prefect database, through a server on the same database.
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    from servegate.flows.local_api import LocalPrefectServer

    with temporary_settings(updates={PREFECT_HOME: str(prefect_home), PREFECT_SERVER_DATABASE_CONNECTION_URL: db_url}):
        reader = LocalPrefectServer.launch()
    try:
        reader.wait_until_healthy(90)
        flow_run_id = outcome["prefect_flow_run_id"]
        with SyncPrefectClient(reader.api_url) as client:
            run = client.read_flow_run(flow_run_id)
            assert run.state.is_completed()
            artifacts = {a.key for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))}
            assert f"{NAME}-validation-report" in artifacts and f"{NAME}-versions" in artifacts
            logs = [log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=20,
                sort=LogSort.TIMESTAMP_DESC)]
            assert any(f"deploy of {NAME}: version 1 promoted" in m for m in logs), logs[-5:]
    finally:
        reader.stop()
