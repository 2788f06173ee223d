"""``servegate sync``'s pass against a real SeaweedFS: places what production serves whole and verified,
follows a rollback, never leaves a partial version where TF Serving looks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from servegate.model_store import fsutil
from servegate.object_store import ManifestMismatch
from servegate.object_store import versions as v
from servegate.object_store.sync import SyncTarget, converge, present_versions, read_heartbeats, remove_version

REPO_ROOT = Path(__file__).resolve().parents[2]


def matches_manifest(store, name: str, directory: Path) -> bool:
    manifest = store.manifest(name, int(directory.name))
    files = {p.relative_to(directory).as_posix(): p for p in directory.rglob("*") if p.is_file()}
    return manifest is not None and {f.path: (f.size, f.sha256) for f in manifest.files} == {
        path: (p.stat().st_size, v.sha256_of(p)) for path, p in files.items()}


def test_promote_then_rollback_are_followed(s3_store, half_plus_two, tmp_path):
    target = SyncTarget("m", tmp_path / "base")
    one = s3_store.stage("m", half_plus_two).version
    two = s3_store.stage("m", half_plus_two).version
    assert converge(s3_store.client, s3_store.location, target).present == []  # nothing promoted yet
    s3_store.promote("m", one)
    assert converge(s3_store.client, s3_store.location, target).present == [one]
    assert matches_manifest(s3_store, "m", target.base_path / str(one))
    s3_store.promote("m", two)
    report = converge(s3_store.client, s3_store.location, target)
    assert (report.wanted, report.present, report.lag_s) == (two, [two], 0.0)
    s3_store.rollback("m")
    assert converge(s3_store.client, s3_store.location, target).present == [one]


@pytest.mark.parametrize("same_size", [False, True], ids=["other-size", "same-size-other-bytes"])
def test_a_file_that_differs_from_the_manifest_is_never_placed(s3_store, half_plus_two, tmp_path, same_size):
    one = s3_store.stage("m", half_plus_two).version
    s3_store.promote("m", one)
    key = v.files_prefix(s3_store.location, "m", one) + "saved_model.pb"
    size = (half_plus_two / "saved_model.pb").stat().st_size
    # the same size: only the sha256 comparison can tell it apart
    body = os.urandom(size) if same_size else b"tampered"
    s3_store.client.put_object(Bucket=s3_store.location.bucket, Key=key, Body=body)
    target = SyncTarget("m", tmp_path / "base")
    with pytest.raises(ManifestMismatch, match="saved_model.pb"):
        converge(s3_store.client, s3_store.location, target)
    assert list(target.base_path.iterdir()) == []


def test_killed_between_verification_and_rename_leaves_no_version_and_converges(s3_store, half_plus_two, tmp_path):
    one = s3_store.stage("m", half_plus_two).version
    s3_store.promote("m", one)
    target = SyncTarget("m", tmp_path / "base")

    def killed(point: str) -> None:
        if point == "s3-download:verified":
            [staging] = target.base_path.glob(".servegate-tmp-*")
            shutil.copytree(staging, tmp_path / "left")  # what a SIGKILL here would leave: a verified temp dir
            raise KeyboardInterrupt

    fsutil.set_checkpoint_hook(killed)
    try:
        with pytest.raises(KeyboardInterrupt):
            converge(s3_store.client, s3_store.location, target)
    finally:
        fsutil.set_checkpoint_hook(None)
    shutil.copytree(tmp_path / "left", target.base_path / ".servegate-tmp-1-dead")
    assert present_versions(target.base_path) == []  # TF Serving lists numbers only: nothing to load
    assert converge(s3_store.client, s3_store.location, target).present == [one]
    assert [p.name for p in target.base_path.iterdir()] == [str(one)]


def _watch_for_partial(store, base: Path, stop: threading.Event, pause: threading.Lock, seen: list[str]) -> None:
    """Continuously: every numeric directory (what TF Serving would list) is the complete version."""
    while not stop.is_set():
        with pause:
            for directory in base.iterdir() if base.is_dir() else []:
                if directory.name.isdigit() and not matches_manifest(store, "big", directory):
                    seen.append(directory.name)
        time.sleep(0.005)


def test_sigkill_mid_download_never_lists_a_partial_version(seaweed, s3_store, tmp_path):
    source = tmp_path / "big"
    (source / "variables").mkdir(parents=True)
    for i in range(6):
        (source / "variables" / f"shard-{i}").write_bytes(os.urandom(8 << 20))
    (source / "saved_model.pb").write_bytes(os.urandom(1024))
    s3_store.promote("big", s3_store.stage("big", source).version)
    base = tmp_path / "base"
    argv = [sys.executable, "-m", "servegate", "sync", "--store", s3_store.location.uri, "--name", "big",
            "--base-path", str(base), "--node-id", "n1", "--interval", "0.2"]
    env = {**os.environ, **seaweed.env(), "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)}
    stop, pause, seen, mid_download = threading.Event(), threading.Lock(), [], 0
    watcher = threading.Thread(target=_watch_for_partial, args=(s3_store, base, stop, pause, seen))
    watcher.start()
    try:
        for delay in (0.0, 0.02, 0.05, 0.1):  # after the download's temp dir appears
            process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while not list(base.glob(".servegate-tmp-*")) and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait()
            mid_download += any(p.name.startswith(".servegate-tmp-") for p in base.glob("*"))
            with pause:
                shutil.rmtree(base / "1", ignore_errors=True)  # the next round downloads again
        assert mid_download, "no kill landed in a download: the rounds proved nothing"
        done = subprocess.run(argv + ["--once"], env=env, capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        watcher.join()
    assert done.returncode == 0, done.stderr[-3000:]
    assert seen == [] and present_versions(base) == [1] and matches_manifest(s3_store, "big", base / "1")
    assert not [p for p in base.iterdir() if not p.name.isdigit()]  # the killed rounds' temp dirs are gone
    beat = next(b for b in read_heartbeats(s3_store.client, s3_store.location) if b["node"] == "n1")
    assert beat["models"]["big"]["present"] == [1] and beat["models"]["big"]["last_error"] is None


def test_the_watcher_sees_a_partial_version(s3_store, tmp_path):
    """The counterpart of the SIGKILL test's watcher: a copy made in place (not renamed) is caught."""
    source = tmp_path / "big"
    source.mkdir()
    (source / "saved_model.pb").write_bytes(b"x" * 100)
    (source / "more").write_bytes(b"y" * 100)
    s3_store.stage("big", source)
    (tmp_path / "base" / "1").mkdir(parents=True)
    (tmp_path / "base" / "1" / "saved_model.pb").write_bytes(b"x" * 100)  # one of two files so far
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch_for_partial, args=(s3_store, tmp_path / "base", stop,
                                                                threading.Lock(), seen))
    watcher.start()
    time.sleep(0.2)
    stop.set()
    watcher.join()
    assert "1" in seen


def test_sync_refuses_mismatched_flags(tmp_path, seaweed, s3_location):
    argv = [sys.executable, "-m", "servegate", "sync", "--store", s3_location.uri, "--name", "a", "--name", "b",
            "--base-path", str(tmp_path / "a")]
    result = subprocess.run(argv, env={**os.environ, **seaweed.env(), "PYTHONPATH": str(REPO_ROOT),
                                       "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "one --base-path per --name" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "a").exists()



def test_a_version_leaves_the_base_path_before_its_files_are_deleted(tmp_path, monkeypatch):
    """A poll (TF Serving's) never finds a half-deleted version: when the first file goes, the number is
    no longer listed (a delete in place would show ``("1", [1])`` here)."""
    (tmp_path / "1" / "variables").mkdir(parents=True)
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "1" / "variables" / "variables.index").write_bytes(b"y")
    (tmp_path / "2").mkdir()
    deleting, rmtree = [], shutil.rmtree

    def watched(path, *args, **kwargs):
        deleting.append((Path(path).name, present_versions(tmp_path)))
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", watched)
    remove_version(tmp_path, 1)
    [(name, listed)] = deleting
    assert name.startswith(".servegate-tmp-gone-1-") and listed == [2]
    assert [p.name for p in tmp_path.iterdir()] == ["2"]
