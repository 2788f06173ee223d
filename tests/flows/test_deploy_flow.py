"""deploy_model end to end: real Prefect (test server), real MLflow (SQLite),
real GX validation, a real canary (bundled server in a process), a real store.

The tests run in order on one store, as a model's life would: v1 promoted,
v2 (broken) rejected, v3 promoted then rolled back because production
verification fails. After each: the store, the registry's aliases and tags,
the MLflow run and the Prefect artifacts are checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NAME = "diabetes"


@pytest.fixture(scope="module")
def world(tmp_path_factory, prefect_harness, tracking_uri):
    from servegate.model_store import ModelStore
    from servegate.tracking import Tracker

    root = tmp_path_factory.mktemp("store")
    return {"store": ModelStore(root), "root": root, "tracker": Tracker(tracking_uri), "uri": tracking_uri}


def _deploy(world, files, **kwargs):
    from servegate.flows.deploy import deploy_model

    return deploy_model(
        model_path=str(files.model_path), name=NAME, reference=str(files.reference_path),
        store=str(world["root"]), tracking_uri=world["uri"], return_state=True, **kwargs,
    )


def _artifacts(flow_run_id: str) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def _check_artifacts(outcome, verdict_word: str):
    arts = _artifacts(outcome["prefect_flow_run_id"])
    assert {f"{NAME}-validation-report", f"{NAME}-versions"} <= set(arts)
    report = arts[f"{NAME}-validation-report"]
    assert report.type == "markdown" and verdict_word in report.data
    table = arts[f"{NAME}-versions"]
    assert table.type == "table"
    return arts


def test_v1_is_promoted(world, demo_files):
    state = _deploy(world, demo_files["baseline"])
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome["verdict"] == "promoted" and outcome["version"] == 1
    assert outcome["figures"]["quality.mae"] > 0

    status = world["store"].status(NAME)
    assert status.versions["production"] == [1] and status.versions["staging"] == []

    tracker = world["tracker"]
    champion = tracker.alias_version(NAME, "champion")
    assert champion.tags["serving_version"] == "1" and champion.tags["verdict"] == "passed"
    assert str(tracker.alias_version(NAME, "challenger").version) == str(champion.version)
    run = tracker.client.get_run(outcome["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert "quality.mae" in run.data.metrics
    logged = {a.path for a in tracker.client.list_artifacts(outcome["mlflow_run_id"], "report")}
    assert "report/report.md" in logged and "report/report.json" in logged
    arts = _check_artifacts(outcome, "PROMOTED")
    assert f"{NAME}-plots" in arts and "data:image/png;base64," in arts[f"{NAME}-plots"].data


def test_broken_v2_is_rejected_and_production_keeps_v1(world, demo_files):
    state = _deploy(world, demo_files["broken"])
    assert state.is_failed()
    outcome = state.result(raise_on_failure=False)
    assert outcome["verdict"] == "rejected" and outcome["version"] == 2
    assert outcome["reasons"] and any(r.startswith(("quality", "regression")) for r in outcome["reasons"])
    assert outcome["reasons"][0].split(":")[0] in state.message

    status = world["store"].status(NAME)
    assert status.versions["production"] == [1]
    assert status.versions["staging"] == [] and 2 in status.versions["rejected"]
    assert status.rejected_reasons[2]  # the reason is kept beside the version

    tracker = world["tracker"]
    assert tracker.alias_version(NAME, "champion").tags["serving_version"] == "1"
    challenger = tracker.alias_version(NAME, "challenger")
    assert challenger.tags["serving_version"] == "2" and challenger.tags["verdict"] == "failed"
    assert challenger.tags["reasons"] != "-"
    assert tracker.client.get_run(outcome["mlflow_run_id"]).info.status == "FAILED"
    _check_artifacts(outcome, "REJECTED")


def test_production_verification_failure_rolls_back(world, demo_files, closed_port_url):
    state = _deploy(world, demo_files["improved"], production_url=closed_port_url, production_deadline_s=1.5)
    assert state.is_failed()
    outcome = state.result(raise_on_failure=False)
    assert outcome["verdict"] == "rolled_back" and outcome["version"] == 3
    assert closed_port_url in outcome["reasons"][0]

    status = world["store"].status(NAME)
    assert status.versions["production"] == [1]
    assert 3 in status.versions["rejected"] and status.versions["staging"] == []

    tracker = world["tracker"]
    assert tracker.alias_version(NAME, "champion").tags["serving_version"] == "1"
    v3 = tracker.find_version(NAME, 3)
    assert v3.tags["verdict"] == "rolled_back"
    assert tracker.client.get_run(outcome["mlflow_run_id"]).info.status == "FAILED"
    _check_artifacts(outcome, "ROLLED_BACK")


def test_bad_input_fails_the_run_before_anything_changes(world, tmp_path):
    from servegate.export import ModelFileMissingError

    before = world["store"].status(NAME).versions
    state = _deploy_missing(world, tmp_path)
    assert state.is_failed()
    with pytest.raises(ModelFileMissingError, match="missing.keras"):
        state.result()
    assert world["store"].status(NAME).versions == before


def _deploy_missing(world, tmp_path):
    from servegate.flows.deploy import deploy_model

    ref = tmp_path / "ref.parquet"
    ref.write_bytes(b"x")
    return deploy_model(model_path=str(tmp_path / "missing.keras"), name=NAME, reference=str(ref),
                        store=str(world["root"]), tracking_uri=world["uri"], return_state=True)


def test_rollback_flow_moves_production_and_champion(world, demo_files):
    from servegate.flows.rollback import rollback_model

    state = _deploy(world, demo_files["improved"])
    assert state.is_completed(), state.message
    assert state.result()["version"] == 4
    tracker = world["tracker"]
    assert tracker.alias_version(NAME, "champion").tags["serving_version"] == "4"

    result = rollback_model(name=NAME, store=str(world["root"]), tracking_uri=world["uri"])
    assert result["from_version"] == 4 and result["to_version"] == 1
    assert world["store"].status(NAME).versions["production"] == [1]
    assert tracker.alias_version(NAME, "champion").tags["serving_version"] == "1"
    run = tracker.client.get_run(result["mlflow_run_id"])
    assert run.data.tags["servegate.action"] == "rollback" and run.info.status == "FINISHED"
