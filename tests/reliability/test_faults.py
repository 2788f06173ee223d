"""Faults that are not a kill of the deploy itself: a canary that never becomes available, a canary
that dies mid-validation, a disk that is full while staging.

Each must end in a clear error (exit 2, or 1 where validation gives the
verdict), with production byte-identical and nothing left behind; a later
deploy then succeeds with a version number never used before.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.model_store.treeutil import diff_snapshots
from tests.reliability.harness import check_clean

NAME = "faulty"


def _first_version(ws, files) -> dict:
    first = ws.deploy(files.good, NAME, files.reference, config=files.config)
    assert first.returncode == 0, first.describe()
    return ws.production_snapshot(NAME)


@pytest.mark.reliability
@pytest.mark.slow
def test_canary_that_never_becomes_available_then_one_that_dies_mid_validation(workspace, model_files, tmp_path):
    ws, f = workspace, model_files
    before = _first_version(ws, f)

    # A canary that hangs: its process group is SIGSTOPped as soon as it starts, so it is alive but
    # never answers, and the 3 s load deadline passes (a prewarmed canary is AVAILABLE in ~0.2 s).
    hang = tmp_path / "hang.yaml"
    hang.write_text("quality:\n  max_mae: 0.5\nload:\n  deadline_s: 3\n")
    result = ws.deploy(f.good, NAME, f.reference, config=hang, hang_canary=True)
    assert result.returncode == 2, result.describe()
    assert "deadline" in result.stderr.lower(), result.describe()
    assert "available" in result.stderr.lower(), result.describe()
    assert diff_snapshots(before, ws.production_snapshot(NAME)) == []
    check_clean(ws, NAME)
    status = ws.model_store().status(NAME)
    assert 2 in status.rejected, status.versions  # the staged candidate went to rejected/ with the reason

    # A canary that dies mid-validation (its process group SIGKILLed after the warm-up request).
    result = ws.deploy(f.good, NAME, f.reference, config=f.config, crash_canary=True)
    assert result.returncode in (1, 2), result.describe()
    text = (result.stdout + result.stderr).lower()
    assert any(s in text for s in ("connection", "unavailable", "refused", "error_rate", "failed requests",
                                   "canary")), result.describe()
    assert diff_snapshots(before, ws.production_snapshot(NAME)) == []
    check_clean(ws, NAME)

    # And the next deploy is promoted, with a number never used before.
    result = ws.deploy(f.good, NAME, f.reference, config=f.config)
    assert result.returncode == 0 and result.version == 4, result.describe()
    check_clean(ws, NAME)


@pytest.fixture
def small_tmpfs_store(workspace):
    """The workspace's store on its own 40 MiB tmpfs (unmounted at teardown)."""
    if os.geteuid() != 0:
        pytest.fail("the full-disk test mounts a tmpfs: it needs root (CI runs as root)")
    workspace.store.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(workspace.store)], check=True)
    yield workspace.store
    workspace.close()  # nothing may keep files open in the store when it is unmounted
    subprocess.run(["umount", "-l", str(workspace.store)], check=False)


@pytest.mark.reliability
@pytest.mark.slow
def test_full_disk_while_staging(workspace, model_files, small_tmpfs_store):
    ws, f = workspace, model_files
    before = _first_version(ws, f)
    # Fill the store's filesystem until about 2 MiB are left.
    stat = os.statvfs(small_tmpfs_store)
    ballast = small_tmpfs_store / "ballast"
    with open(ballast, "wb") as out:
        out.write(b"\0" * (stat.f_bavail * stat.f_frsize - 2 * 1024 * 1024))
    result = ws.deploy(f.good, NAME, f.reference, config=f.config)
    assert result.returncode == 2, result.describe()
    assert "space" in result.stderr.lower() and str(small_tmpfs_store) in result.stderr, result.describe()
    assert diff_snapshots(before, ws.production_snapshot(NAME)) == []
    check_clean(ws, NAME)

    ballast.unlink()
    result = ws.deploy(f.good, NAME, f.reference, config=f.config)
    assert result.returncode == 0, result.describe()
    used = {r.version for r in ws.model_store().status(NAME, history_limit=1000).history if r.operation != "promote"}
    assert result.version == max(used) and result.version > 1
    check_clean(ws, NAME)
