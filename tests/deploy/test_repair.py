"""The repairs a deploy makes for the attempts killed before it, tested directly (no CLI, no canary).

- versions a killed deploy left in staging go to ``rejected/`` with the reason;
  a live process's staged version is left alone;
- work dirs of killed attempts are removed; a live attempt's is kept.
"""

from __future__ import annotations

import subprocess
import sys

from servegate.model_store import ModelStore
from servegate.deploy.record import AttemptRecord, DeployRequest
from servegate.deploy.staging import abandoned_versions, reject_abandoned
from servegate.runtime.workdirs import WORK_DIR_PREFIX, new_work_dir
from tests.conftest import REPO_ROOT

STAGE_AND_EXIT = "import sys; from servegate.model_store import ModelStore; print(ModelStore(sys.argv[1]).stage('m', sys.argv[2]))"


def test_versions_staged_by_a_dead_deploy_are_rejected_and_a_live_ones_kept(tmp_path, tiny_savedmodel):
    store = ModelStore(tmp_path / "store")
    dead = subprocess.run([sys.executable, "-c", STAGE_AND_EXIT, str(store.root), str(tiny_savedmodel)],
                          capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=120)
    dead_version = int(dead.stdout.split()[-1])
    live_version = store.stage("m", tiny_savedmodel)  # staged by this (live) process
    request = DeployRequest(model_path=tiny_savedmodel, name="m", reference=tmp_path / "ref.parquet",
                            store_root=store.root, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    record = AttemptRecord(request=request, work_dir=str(tmp_path / "work"))
    assert [r.version for r in abandoned_versions(store, "m")] == [dead_version]
    assert reject_abandoned(record) == [dead_version]
    status = store.status("m")
    assert status.staging == [live_version] and status.rejected == [dead_version]
    assert "abandoned" in status.rejected_reasons[dead_version]
    assert reject_abandoned(record) == []


def test_work_dirs_of_dead_attempts_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    gone = subprocess.run([sys.executable, "-c", "from servegate.runtime.workdirs import new_work_dir; print(new_work_dir())"],
                          capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=60,
                          env={**__import__("os").environ, "TMPDIR": str(tmp_path)})
    left = tmp_path / gone.stdout.split()[-1].rsplit("/", 1)[-1]
    assert left.is_dir() and left.name.startswith(WORK_DIR_PREFIX)  # its process ended without cleanup
    mine = new_work_dir()
    assert mine.is_dir() and mine.parent == tmp_path
    assert not left.exists()
    other = new_work_dir()
    assert mine.exists() and other.exists()  # this process lives: its dirs stay
