"""new_work_dir: named after its process; removes the work dirs of attempts whose process is gone."""

from __future__ import annotations

import os
import tempfile

import pytest

from servegate.runtime.identity import start_ticks
from servegate.runtime.workdirs import WORK_DIR_PREFIX, new_work_dir, owner_of


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    return tmp_path


def test_name_says_pid_and_start_ticks(tmpdir_env):
    work = new_work_dir()
    assert work.is_dir() and work.parent == tmpdir_env
    assert work.name.startswith(f"{WORK_DIR_PREFIX}{os.getpid()}-{start_ticks(os.getpid())}-")
    assert owner_of(work).is_alive() is True


def test_dead_and_recycled_attempts_dirs_go_live_ones_and_others_stay(tmpdir_env, dead_identity, sleeper):
    def make(name: str):
        path = tmpdir_env / name
        (path / "savedmodel").mkdir(parents=True)
        return path

    dead = make(f"{WORK_DIR_PREFIX}{dead_identity.pid}-{dead_identity.start_ticks}-abc")
    recycled = make(f"{WORK_DIR_PREFIX}{sleeper.pid}-{start_ticks(sleeper.pid) + 1}-abc")
    live = make(f"{WORK_DIR_PREFIX}{sleeper.pid}-{start_ticks(sleeper.pid)}-abc")
    mine = new_work_dir()
    unrelated = [make(f"{WORK_DIR_PREFIX}notapid-1-abc"), make(f"{WORK_DIR_PREFIX}{dead_identity.pid}-None-x"),
                 make("servegate-canary-m-abc")]
    second = new_work_dir()  # an attempt never removes this process's own dirs
    assert not dead.exists() and not recycled.exists()
    assert live.is_dir() and mine.is_dir() and second.is_dir() and mine != second
    assert all(path.is_dir() for path in unrelated)
