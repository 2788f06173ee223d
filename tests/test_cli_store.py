"""``servegate status`` and ``servegate rollback``: output, exit codes, the store root's precedence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servegate.cli import main
from servegate.model_store import ModelStore
from tests.model_store.treeutil import diff_snapshots, snapshot_tree

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def src(tmp_path_factory, tfs_testdata) -> Path:
    path = tmp_path_factory.mktemp("cli-src") / "hp2"
    shutil.copytree(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", path)
    return path


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


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "servegate", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


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
    assert store.status("hp2").rejected_reasons[3] == "rolled back"
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
def test_bad_input_exit_2_and_store_unchanged(root, args, needles):
    before = snapshot_tree(root)
    result = cli(*args, "--store", str(root))
    assert result.returncode == 2, (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert diff_snapshots(before, snapshot_tree(root)) == []


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
    script = REPO_ROOT / ".venv" / "bin" / "servegate"
    if not script.exists():
        pytest.skip("no .venv/bin/servegate (run scripts/setup.sh)")
    result = subprocess.run([str(script), "status", "--name", "hp2", "--store", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "production serves: version 3" in result.stdout
