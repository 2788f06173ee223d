"""deploy_model and rollback_model with real Prefect (test server), real MLflow
(SQLite), real GX validation, a real canary (bundled server in a process) and
a real store.

Production starts with version 1 put there directly (store + registry, as an
earlier deploy would leave it), so that only the paths under test boot a
canary. The promoted and rejected paths through the same flow are covered, with
their store/registry/artifact checks, by test_cli_deploy.py and test_demo.py.
"""

from __future__ import annotations

import os

import pytest

NAME = "diabetes"


def seed_production(world, files) -> int:
    """Stage, promote and register a version without a canary (what a passed deploy leaves)."""
    from servegate import export

    sm = export.export_model(files.model_path, world["root"].parent / f"seed-{files.variant}-{len(world['seeded'])}")
    store, tracker = world["store"], world["tracker"]
    run_id = tracker.start_run(NAME, params={"seeded": True})
    version = store.stage(NAME, sm.savedmodel_dir, run_id=run_id)
    reg = tracker.register_version(run_id, NAME, sm.savedmodel_dir, version)
    store.promote(NAME, version, run_id=run_id)
    tracker.record_verdict(NAME, reg.registry_version, "passed")
    tracker.set_champion(NAME, version)
    tracker.end_run(run_id)
    world["seeded"].append(version)
    return version


@pytest.fixture(scope="module")
def world(tmp_path_factory, prefect_harness, tracking_uri, demo_files):
    from servegate.model_store import ModelStore
    from servegate.tracking import Tracker

    root = tmp_path_factory.mktemp("flowstore") / "store"
    # Our own SERVEGATE_HOME: the canaries' pid files land there, and only ours.
    previous_home = os.environ.get("SERVEGATE_HOME")
    os.environ["SERVEGATE_HOME"] = str(root.parent / "home")
    try:
        world = {"store": ModelStore(root), "root": root, "tracker": Tracker(tracking_uri), "uri": tracking_uri,
                 "seeded": []}
        assert seed_production(world, demo_files["baseline"]) == 1
        yield world
    finally:
        if previous_home is None:
            os.environ.pop("SERVEGATE_HOME", None)
        else:
            os.environ["SERVEGATE_HOME"] = previous_home


def _deploy(world, files, **kwargs):
    from servegate.flows.deploy import deploy_model

    return deploy_model(
        model_path=str(files.model_path), name=NAME, reference=str(files.reference_path),
        store=str(world["root"]), tracking_uri=world["uri"], return_state=True, **kwargs,
    )


def live_canaries() -> set[str]:
    """Pid files of process canaries that are still running (a stopped canary removes its file)."""
    from servegate.serving.runners.state import process_state_dir

    d = process_state_dir()
    assert str(d).startswith(os.environ["SERVEGATE_HOME"])
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def read_artifacts(flow_run_id: str) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


@pytest.mark.slow
def test_production_verification_failure_rolls_back(world, demo_files, closed_port_url):
    from servegate.deploy import ProductionVerificationError

    canaries_before = live_canaries()
    state = _deploy(world, demo_files["improved"], production_url=closed_port_url, production_deadline_s=1.5)
    assert live_canaries() <= canaries_before  # the canary is gone before the flow run ends
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ProductionVerificationError)
    outcome = error.outcome
    assert outcome["verdict"] == "rolled_back" and outcome["version"] == 2
    assert closed_port_url in outcome["reasons"][0] and closed_port_url in state.message

    # the candidate passed validation, was promoted, and was rolled back by the promote hook
    status = world["store"].status(NAME)
    assert status.versions["production"] == [1]
    assert status.versions["rejected"] == [2] and status.versions["staging"] == []
    assert status.rejected_reasons[2].startswith("rolled back")

    tracker = world["tracker"]
    assert tracker.alias_version(NAME, "champion").tags["serving_version"] == "1"
    challenger = tracker.alias_version(NAME, "challenger")
    assert challenger.tags["serving_version"] == "2" and challenger.tags["verdict"] == "rolled_back"
    assert closed_port_url in challenger.tags["reasons"]
    run = tracker.client.get_run(outcome["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["servegate.verdict"] == "rolled_back"

    arts = read_artifacts(outcome["prefect_flow_run_id"])
    assert "ROLLED_BACK" in arts[f"{NAME}-validation-report"].data
    table = arts[f"{NAME}-versions"]
    assert table.type == "table" and '"rejected"' in table.data and '"production"' in table.data


def test_bad_input_fails_the_run_before_anything_changes(world, tmp_path):
    from servegate.export import ModelFileMissingError

    before = world["store"].status(NAME).versions
    ref = tmp_path / "ref.parquet"
    ref.write_bytes(b"x")
    from servegate.flows.deploy import deploy_model

    state = deploy_model(model_path=str(tmp_path / "missing.keras"), name=NAME, reference=str(ref),
                         store=str(world["root"]), tracking_uri=world["uri"], return_state=True)
    assert state.is_failed()
    with pytest.raises(ModelFileMissingError, match="missing.keras"):
        state.result()
    assert world["store"].status(NAME).versions == before


def test_rollback_flow_moves_production_and_champion(world, demo_files):
    from servegate.flows.rollback import rollback_model

    newer = seed_production(world, demo_files["improved"])
    tracker = world["tracker"]
    assert tracker.alias_version(NAME, "champion").tags["serving_version"] == str(newer)

    result = rollback_model(name=NAME, store=str(world["root"]), tracking_uri=world["uri"])
    assert result["from_version"] == newer and result["to_version"] == 1
    status = world["store"].status(NAME)
    assert status.versions["production"] == [1] and newer in status.versions["rejected"]
    assert tracker.alias_version(NAME, "champion").tags["serving_version"] == "1"
    run = tracker.client.get_run(result["mlflow_run_id"])
    assert run.data.tags["servegate.action"] == "rollback" and run.info.status == "FINISHED"


def test_rollback_with_nothing_to_go_back_to_is_refused(world):
    from servegate.errors import StoreError
    from servegate.flows.rollback import rollback_model

    state = rollback_model(name=NAME, store=str(world["root"]), tracking_uri=world["uri"], return_state=True)
    assert state.is_failed()
    with pytest.raises(StoreError):
        state.result()
    assert world["store"].status(NAME).versions["production"] == [1]


@pytest.mark.slow
def test_plain_pipeline_rejects_and_cleans_up_without_prefect(world, demo_files, caplog):
    """run_deploy: the same steps and undo semantics with no Prefect at all."""
    import logging

    from servegate.deploy import DeployRequest, run_deploy

    before = world["store"].status(NAME)
    canaries_before = live_canaries()
    with caplog.at_level(logging.INFO, logger="servegate.deploy"):
        outcome = run_deploy(
            DeployRequest(model_path=demo_files["broken"].model_path, name=NAME,
                          reference=demo_files["broken"].reference_path, store_root=world["root"],
                          tracking_uri=world["uri"]),
        )
    steps = [r.getMessage() for r in caplog.records if r.name == "servegate.deploy"]
    assert outcome.verdict == "rejected" and outcome.exit_code == 1
    assert live_canaries() <= canaries_before
    assert outcome.prefect_flow_run_id is None and outcome.reasons
    status = world["store"].status(NAME)
    assert status.versions["production"] == before.versions["production"]
    assert outcome.version in status.versions["rejected"] and status.versions["staging"] == []
    assert any(s.startswith("canary: AVAILABLE") for s in steps) and any(s.startswith("reject:") for s in steps)
    # how far through the reference rows, for the candidate and the baseline (production's version)
    answered = [s for s in steps if "reference rows answered" in s]
    assert any(s.startswith("validate: canary: ") for s in answered), steps
    assert any(s.startswith("validate: stable: ") for s in answered), steps
    tracker = world["tracker"]
    assert tracker.client.get_run(outcome.mlflow_run_id).info.status == "FAILED"
    assert tracker.find_version(NAME, outcome.version).tags["verdict"] == "failed"
    assert outcome.report_uri and outcome.report_uri.endswith("/report")


@pytest.mark.docker
@pytest.mark.slow
def test_docker_canary_rejects_and_leaves_no_container(world, demo_files, docker_client):
    """The same flow with the canary in a real container (the registry-free local image),
    serving the candidate beside production's version for the regression check."""
    from servegate.serving.runners.image import ensure_local_image

    image = ensure_local_image(client=docker_client)
    state = _deploy(world, demo_files["broken"], serving="docker", docker_image=image)
    assert state.is_failed()
    outcome = state.result(raise_on_failure=False).outcome
    assert outcome["verdict"] == "rejected"
    assert any(r.startswith("regression") for r in outcome["reasons"])  # production's version served as "stable"
    assert outcome["version"] in world["store"].status(NAME).versions["rejected"]
    left = docker_client.containers.list(all=True, filters={"label": f"servegate.run_id={outcome['mlflow_run_id']}"})
    assert left == []
    assert world["tracker"].client.get_run(outcome["mlflow_run_id"]).data.params["serving"] == "docker"
