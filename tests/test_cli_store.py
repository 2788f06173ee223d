"""``servegate status`` and ``servegate rollback``: output, exit codes, the store root's precedence.

Every command runs as a subprocess in a brand-new HOME (no ~/.servegate, no MLflow database), as a new
user meets it; ``servegate rollback`` keeps MLflow in step (champion, verdict tags, a rollback run).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from servegate.cli import main
from servegate.model_store import ModelStore
from tests.model_store.treeutil import diff_snapshots, snapshot_tree
from tests.support.cli import VENV_BIN, run_servegate
from tests.support.ports import free_port


@pytest.fixture(autouse=True)
def fresh_home(tmp_path, monkeypatch) -> Path:
    """A brand-new HOME for every test: in-process calls and subprocesses (which inherit os.environ)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("SERVEGATE_HOME", "SERVEGATE_STORE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def src(hp2) -> Path:
    return hp2


@pytest.fixture
def root(tmp_path, src) -> Path:
    """production: 1, 2, 3; staging: 4; rejected: 5 (reason "parity failed")."""
    root = tmp_path / "store"
    store = ModelStore(root)
    for _ in range(3):
        store.promote("hp2", store.stage("hp2", src, run_id="train-1"))
    store.stage("hp2", src)
    store.reject("hp2", store.stage("hp2", src), "parity failed")
    return root


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``servegate ARGS`` in this test's HOME (``fresh_home``): the one its in-process calls see."""
    return run_servegate(*args, home=Path(os.environ["HOME"]), env=env, timeout=120)


def test_status_human(root):
    result = cli("status", "--name", "hp2", "--store", str(root))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "production serves: version 3" in out
    assert "production  1, 2, 3" in out and "staging     4" in out and "rejected    5" in out
    assert "5: parity failed" in out
    assert "next version: 6" in out
    assert "recent history:" in out and "promote" in out and "run train-1" in out
    assert str(root / "production" / "hp2") in out


def test_status_json(root, capsys):
    assert main(["status", "--name", "hp2", "--store", str(root), "--json", "--history", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["serving_version"] == 3
    assert data["versions"] == {"production": [1, 2, 3], "staging": [4], "rejected": [5]}
    assert data["rejected_reasons"] == {"5": "parity failed"}
    assert len(data["history"]) == 3 and data["history"][-1]["operation"] == "reject"
    assert data["base_paths"]["production"] == str(root / "production" / "hp2")


def test_store_root_precedence(root, tmp_path, capsys, monkeypatch):
    # environment variable
    monkeypatch.setenv("SERVEGATE_STORE", str(root))
    assert main(["status", "--name", "hp2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == str(root)
    # the flag beats the environment
    other = tmp_path / "other"
    ModelStore(other).stage("hp2", root / "production" / "hp2" / "1")
    assert main(["status", "--name", "hp2", "--json", "--store", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == str(other)
    # the default: $SERVEGATE_HOME/store
    monkeypatch.delenv("SERVEGATE_STORE")
    monkeypatch.setenv("SERVEGATE_HOME", str(tmp_path / "home"))
    ModelStore(tmp_path / "home" / "store").stage("hp2", root / "production" / "hp2" / "1")
    assert main(["status", "--name", "hp2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == str(tmp_path / "home" / "store")


def test_rollback_previous_and_to(root):
    result = cli("rollback", "--name", "hp2", "--store", str(root), "--run-id", "ops-1")
    assert result.returncode == 0, result.stderr
    assert "production now serves version 2 (was 3)" in result.stdout
    result = cli("rollback", "--name", "hp2", "--to", "1", "--json", env={"SERVEGATE_STORE": str(root)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["from_version"], data["to_version"], data["rejected"]) == (2, 1, [2])
    store = ModelStore(root)
    assert store.versions("hp2", "production") == [1]
    assert store.status("hp2").rejected_reasons[3] == "rolled back from the command line"  # the default --reason
    assert any(r.run_id == "ops-1" for r in store.history("hp2"))


@pytest.mark.parametrize("args, needles", [
    (["rollback", "--name", "../x"], ["error: model name '../x'", "expected"]),
    (["rollback", "--name", "a/b"], ["error: model name 'a/b'"]),
    (["rollback", "--name", ""], ["error: model name is empty"]),
    (["rollback", "--name", "x" * 300], ["error: model name", "too long"]),
    (["status", "--name", "../x"], ["error: model name '../x'"]),
    (["status", "--name", "nope"], ["error:", "no model named 'nope'", "hp2"]),
    (["rollback", "--name", "nope"], ["error:", "no model named 'nope'"]),
    (["rollback", "--name", "hp2", "--to", "99"], ["error: version 99 of model 'hp2'", "no such version"]),
    (["rollback", "--name", "hp2", "--to", "4"], ["error: version 4", "(it is in staging)", "newer than version 3"]),
    (["rollback", "--name", "hp2", "--to", "5"], ["error: version 5", "(it is in rejected)"]),
    (["rollback", "--name", "hp2", "--to", "abc"], ["error: --to version 'abc' is not a positive integer"]),
    (["rollback", "--name", "hp2", "--to", "0"], ["error: --to version 0 is out of range"]),
])
def test_bad_input_exit_2_and_store_unchanged(root, args, needles, fresh_home):
    before = snapshot_tree(root)
    result = cli(*args, "--store", str(root))
    assert result.returncode == 2, (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert diff_snapshots(before, snapshot_tree(root)) == []
    assert not (fresh_home / ".servegate" / "mlflow.db").exists()  # a refused rollback opens no MLflow run


def test_rollback_with_nothing_to_go_back_to(tmp_path, src):
    root = tmp_path / "store"
    store = ModelStore(root)
    store.promote("hp2", store.stage("hp2", src))
    before = snapshot_tree(root)
    result = cli("rollback", "--name", "hp2", "--store", str(root))
    assert result.returncode == 2
    assert "error: production of model 'hp2' holds only version 1" in result.stderr
    assert "no older version to roll back to" in result.stderr
    assert diff_snapshots(before, snapshot_tree(root)) == []


def test_store_root_that_is_a_file(tmp_path):
    root = tmp_path / "store"
    root.write_text("x")
    for args in (["status", "--name", "hp2"], ["rollback", "--name", "hp2"]):
        result = cli(*args, "--store", str(root))
        assert result.returncode == 2
        assert f"error: store root {root} is not a directory" in result.stderr
    assert root.read_text() == "x"


def test_rollback_waits_for_the_lock_then_names_the_holder(root):
    from tests.model_store.conftest import spawn_child

    proc = spawn_child("hold-lock", {"root": str(root), "model": "hp2", "operation": "deploy", "run_id": "r-77"})
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().strip() == "held"
        result = cli("rollback", "--name", "hp2", "--store", str(root), "--lock-timeout", "0.5")
        assert result.returncode == 2
        assert f"pid {proc.pid}" in result.stderr and "operation deploy" in result.stderr
        status = cli("status", "--name", "hp2", "--store", str(root))
        assert f"locked by pid {proc.pid}" in status.stdout
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert ModelStore(root).versions("hp2", "production") == [1, 2, 3]


def test_console_script(root):
    if not (VENV_BIN / "servegate").exists():
        pytest.skip(f"no {VENV_BIN / 'servegate'} (run scripts/setup.sh)")
    result = run_servegate("status", "--name", "hp2", "--store", str(root), script=True, timeout=120)
    assert result.returncode == 0 and "production serves: version 3" in result.stdout


# ---------------------------------------------------------------- rollback keeps MLflow in step (issue 9)

def _two_deploys(src: Path) -> dict:
    """v1 then v2 promoted as deploys leave them (registered, verdict passed, champion), under the fresh HOME."""
    from servegate.release import Release
    from tests.test_release import deploy_like

    rel = Release()
    (v1, run1, r1), (v2, run2, r2) = deploy_like(rel, "hp2", src), deploy_like(rel, "hp2", src)
    assert str(rel.tracker.alias_version("hp2", "champion").version) == r2
    return {"registry": {v1: r1, v2: r2}, "runs": {v1: run1, v2: run2}}


def _rollback_runs(tracker) -> list:
    exp = tracker.client.get_experiment_by_name("servegate/hp2")
    return tracker.client.search_runs([exp.experiment_id], "tags.`servegate.action` = 'rollback'")


def test_rollback_moves_champion_tags_versions_and_records_a_run(src, fresh_home):
    """The bug of issue 9: after `servegate rollback` production, champion, verdict tags and runs all agree."""
    from servegate.tracking import Tracker

    deployed = _two_deploys(src)
    result = cli("rollback", "--name", "hp2", "--reason", "p95 latency doubled", "--run-id", deployed["runs"][2])
    assert result.returncode == 0, result.stderr
    assert "production now serves version 1 (was 2)" in result.stdout
    assert f"champion -> registry version {deployed['registry'][1]}" in result.stdout
    assert "Traceback" not in result.stderr and "INFO" not in result.stderr, result.stderr

    assert ModelStore(fresh_home / ".servegate" / "store").versions("hp2", "production") == [1]
    tracker = Tracker()  # the default URI under the fresh HOME: where the CLI recorded
    assert str(tracker.alias_version("hp2", "champion").version) == deployed["registry"][1]
    tags = tracker.client.get_model_version("hp2", deployed["registry"][2]).tags
    assert (tags["verdict"], tags["reasons"]) == ("rolled_back", "p95 latency doubled")
    (run,) = _rollback_runs(tracker)
    assert run.info.status == "FINISHED"
    assert (run.data.tags["servegate.from_version"], run.data.tags["servegate.to_version"]) == ("2", "1")
    assert run.data.tags["servegate.reason"] == "p95 latency doubled"
    assert run.data.tags["servegate.caused_by_run"] == deployed["runs"][2]
    assert run.info.run_id in result.stdout


def test_rollback_json_keeps_its_fields_and_adds_mlflow(src, fresh_home, tmp_path):
    from servegate.tracking import Tracker

    deployed = _two_deploys(src)
    result = cli("rollback", "--name", "hp2", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    store = fresh_home / ".servegate" / "store"
    assert {k: data[k] for k in ("model", "from_version", "to_version", "rejected", "production_path", "changed")} == {
        "model": "hp2", "from_version": 2, "to_version": 1, "rejected": [2],
        "production_path": str(store / "production" / "hp2"), "changed": True}
    assert data["champion_registry_version"] == deployed["registry"][1]
    assert data["reason"] == "rolled back from the command line" and data["action"] == "rollback"
    assert Tracker().client.get_run(data["mlflow_run_id"]).data.tags["servegate.action"] == "rollback"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_rollback_tracking_uri_flag_and_environment(root, tmp_path, fresh_home, how):
    from servegate.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    args = ["rollback", "--name", "hp2", "--store", str(root), "--json"]
    if how == "flag":
        result = cli(*args, "--tracking-uri", uri, env={"MLFLOW_TRACKING_URI": "sqlite:////nonexistent/dir/x.db"})
    else:
        result = cli(*args, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["champion_registry_version"] is None  # these versions were never registered
    assert Tracker(uri).run_status(data["mlflow_run_id"]) == "FINISHED"
    assert not (fresh_home / ".servegate" / "mlflow.db").exists()


def test_rollback_with_a_dead_tracking_server_changes_nothing(root):
    port = free_port()  # nothing listens there
    before = snapshot_tree(root)
    result = cli("rollback", "--name", "hp2", "--store", str(root), "--tracking-uri", f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"error: MLflow tracking server not reachable at MLFLOW_TRACKING_URI=http://127.0.0.1:{port}" in result.stderr
    assert diff_snapshots(before, snapshot_tree(root)) == []
