"""The one release path: promote, reject and rollback keep the store and MLflow in step.

Real store, real MLflow (SQLite in a temp dir), TensorFlow Serving's
half_plus_two SavedModel. The command line and the flow are tested as users
meet them in tests/test_cli_store.py and at the end of this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servegate.errors import TrackingError
from servegate.model_store import ModelStore, NothingToRollBackTo, UnknownModel
from servegate.release import Release, ReleaseNotRecorded
from servegate.tracking import CHAMPION, Tracker
from tests.support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def src(hp2) -> Path:
    return hp2


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")


@pytest.fixture
def release(tmp_path, tracker) -> Release:
    return Release(store=ModelStore(tmp_path / "store"), tracker=tracker)


def deploy_like(rel: Release, name: str, src: Path, promote: bool = True) -> tuple[int, str, str]:
    """What a passing deploy leaves: a staged, registered version (promoted through ``rel``)."""
    version = rel.store.stage(name, src)
    run_id = rel.tracker.start_run(name)
    registered = rel.tracker.register_version(run_id, name, rel.store.version_path("staging", name, version), version)
    rel.tracker.record_verdict(name, registered.registry_version, "passed")
    if promote:
        rel.promote(name, version, run_id=run_id)
    rel.tracker.end_run(run_id)
    return version, run_id, registered.registry_version


def champion_serving(tracker: Tracker, name: str) -> str | None:
    mv = tracker.alias_version(name, CHAMPION)
    return None if mv is None else mv.tags["serving_version"]


def rollback_runs(tracker: Tracker, name: str) -> list:
    exp = tracker.client.get_experiment_by_name(f"servegate/{name}")
    return tracker.client.search_runs([exp.experiment_id], "tags.`servegate.action` = 'rollback'")


def test_promote_moves_champion(release, src):
    v1, _, r1 = deploy_like(release, "m-promote", src)
    assert champion_serving(release.tracker, "m-promote") == str(v1)
    v2, run2, r2 = deploy_like(release, "m-promote", src, promote=False)
    result = release.promote("m-promote", v2, run_id=run2)
    assert (result.action, result.from_version, result.to_version, result.versions, result.changed) == (
        "promote", v1, v2, [v2], True)
    assert result.champion_registry_version == r2 and champion_serving(release.tracker, "m-promote") == str(v2)
    mv2 = release.tracker.client.get_model_version("m-promote", r2)
    assert mv2.tags["store_path"] == str(release.store.version_path("production", "m-promote", v2))
    # promoting again is a no-op in the store; MLflow stays as it is
    again = release.promote("m-promote", v2)
    assert not again.changed and again.versions == [] and again.champion_registry_version == r2


def test_retention_moves_store_path_of_retired_versions(tmp_path, tracker, src):
    rel = Release(store=ModelStore(tmp_path / "store", retention=1), tracker=tracker)
    v1, _, r1 = deploy_like(rel, "m-retire", src)
    deploy_like(rel, "m-retire", src)
    mv1 = tracker.client.get_model_version("m-retire", r1)
    assert mv1.tags["store_path"] == str(rel.store.version_path("rejected", "m-retire", v1))
    assert mv1.tags["verdict"] == "passed"  # retired is not a verdict


def test_reject_a_staged_version(release, src):
    v1, _, _ = deploy_like(release, "m-reject", src)
    v2, run2, r2 = deploy_like(release, "m-reject", src, promote=False)
    result = release.reject("m-reject", v2, "parity: 50% < 99%", run_id=run2)
    assert (result.from_version, result.to_version, result.versions, result.mlflow_run_id) == (v1, v1, [v2], None)
    mv2 = release.tracker.client.get_model_version("m-reject", r2)
    assert (mv2.tags["verdict"], mv2.tags["reasons"]) == ("rejected", "parity: 50% < 99%")
    assert mv2.tags["store_path"] == str(release.store.version_path("rejected", "m-reject", v2))
    assert champion_serving(release.tracker, "m-reject") == str(v1)
    assert rollback_runs(release.tracker, "m-reject") == []


def test_reject_the_served_version_is_a_recorded_rollback(release, src):
    """A deploy's undo when production served nothing before: production empties, champion goes."""
    v1, run1, r1 = deploy_like(release, "m-unserve", src)
    result = release.reject("m-unserve", v1, "production never answered", run_id=run1)
    assert (result.from_version, result.to_version, result.champion_registry_version) == (v1, None, None)
    assert release.tracker.alias_version("m-unserve", CHAMPION) is None
    mv1 = release.tracker.client.get_model_version("m-unserve", r1)
    assert (mv1.tags["verdict"], mv1.tags["reasons"]) == ("rolled_back", "production never answered")
    (run,) = rollback_runs(release.tracker, "m-unserve")
    assert run.info.run_id == result.mlflow_run_id
    assert run.data.tags["servegate.caused_by_run"] == run1 and run.data.tags["servegate.to_version"] == "none"


def test_rollback_keeps_mlflow_in_step(release, src):
    (v1, _, r1), (v2, _, r2), (v3, run3, r3) = (deploy_like(release, "m-back", src) for _ in range(3))
    result = release.rollback("m-back", to_version=v1, reason="p95 latency doubled", run_id=run3,
                              flow_run_id="flow-123")
    assert (result.action, result.from_version, result.to_version, result.versions, result.changed) == (
        "rollback", v3, v1, [v3, v2], True)
    assert release.store.versions("m-back", "production") == [v1]
    assert result.champion_registry_version == r1 and champion_serving(release.tracker, "m-back") == str(v1)
    for registry_version in (r2, r3):
        tags = release.tracker.client.get_model_version("m-back", registry_version).tags
        assert (tags["verdict"], tags["reasons"]) == ("rolled_back", "p95 latency doubled")
    assert release.tracker.client.get_model_version("m-back", r1).tags["verdict"] == "passed"
    run = release.tracker.client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == f"m-back rollback v{v3} -> v{v1}"
    assert {k: run.data.tags[k] for k in ("servegate.action", "servegate.from_version", "servegate.to_version",
                                          "servegate.reason", "servegate.caused_by_run", "prefect.flow_run_id")} == {
        "servegate.action": "rollback", "servegate.from_version": str(v3), "servegate.to_version": str(v1),
        "servegate.reason": "p95 latency doubled", "servegate.caused_by_run": run3, "prefect.flow_run_id": "flow-123"}
    assert "p95 latency doubled" in run.data.tags["mlflow.note.content"]
    assert any(r.operation == "rollback" and r.run_id == run3 for r in release.store.history("m-back"))


def test_rollback_already_there_is_still_recorded(release, src):
    v1, _, r1 = deploy_like(release, "m-there", src)
    deploy_like(release, "m-there", src)
    release.rollback("m-there")
    result = release.rollback("m-there", to_version=v1)
    assert not result.changed and result.versions == [] and result.champion_registry_version == r1
    assert len(rollback_runs(release.tracker, "m-there")) == 2


def test_refused_rollbacks_change_nothing_and_open_no_mlflow(tmp_path, src):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    store = ModelStore(tmp_path / "store")
    store.promote("m-refused", store.stage("m-refused", src))
    rel = Release(store=store, tracking_uri=uri)
    with pytest.raises(NothingToRollBackTo):
        rel.rollback("m-refused")
    with pytest.raises(UnknownModel):
        rel.rollback("nope")
    assert store.versions("m-refused", "production") == [1]
    assert not (tmp_path / "mlflow").exists()  # no run, not even a database


def test_unreachable_tracking_server_is_refused_before_the_store_changes(tmp_path, src):
    port = free_port()  # nothing listens there
    store = ModelStore(tmp_path / "store")
    for _ in range(2):
        store.promote("m-dead", store.stage("m-dead", src))
    rel = Release(store=store, tracking_uri=f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingError, match=f"not reachable at MLFLOW_TRACKING_URI=http://127.0.0.1:{port}"):
        rel.rollback("m-dead")
    assert store.versions("m-dead", "production") == [1, 2]


class _BrokenTracker(Tracker):
    """MLflow that fails after the store moved (a database gone read-only, a server that died meanwhile)."""

    def set_champion(self, model_name, serving_version):
        raise TrackingError("MLflow set alias at sqlite:///x: database is locked")


def test_mlflow_failing_after_the_store_moved_says_what_production_serves(release, tracker, src):
    deploy_like(release, "m-broken", src)
    deploy_like(release, "m-broken", src)
    broken = _BrokenTracker.__new__(_BrokenTracker)
    broken.__dict__.update(tracker.__dict__)
    rel = Release(store=release.store, tracker=broken)
    with pytest.raises(ReleaseNotRecorded) as info:
        rel.rollback("m-broken")
    message = str(info.value)
    assert "production serves version 1" in message and "database is locked" in message
    assert "servegate rollback --name m-broken --to 1" in message
    # the repair the message names brings MLflow in step
    result = release.rollback("m-broken", to_version=1)
    assert champion_serving(release.tracker, "m-broken") == "1" and not result.changed


# The rollback-model flow on Prefect (~18 s): CI's second step; the CLI rollback tests (tests/test_cli_store.py) stay in the default run.
@pytest.mark.reliability
@pytest.mark.slow
def test_rollback_flow_is_the_same_release(tmp_path, src, monkeypatch):
    """The rollback-model flow, run as a script in a brand-new HOME (Prefect's own ephemeral server)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("SERVEGATE_HOME", "SERVEGATE_STORE", "MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    rel = Release()  # the defaults under the new HOME, as the flow will find them
    for _ in range(2):
        deploy_like(rel, "m-flow", src)
    script = ("import json; from servegate.flows.rollback import rollback_model; "
              "print('RESULT', json.dumps(rollback_model(name='m-flow', reason='canary drift')))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert (result["from_version"], result["to_version"], result["versions"]) == (2, 1, [2])
    assert rel.store.versions("m-flow", "production") == [1]
    tracker = rel.tracker
    assert champion_serving(tracker, "m-flow") == "1"
    assert tracker.find_version("m-flow", 2).tags["verdict"] == "rolled_back"
    run = tracker.client.get_run(result["mlflow_run_id"])
    assert run.data.tags["servegate.action"] == "rollback" and run.data.tags["servegate.reason"] == "canary drift"
    assert run.data.tags["prefect.flow_run_id"]  # the flow run that did it
