"""Production on another filesystem: promote by copy into a dot-named temp dir, fsync, one rename."""

from __future__ import annotations

import errno
import os

import pytest

from servegate.model_store import ModelStore, fsutil
from tests.model_store.treeutil import assert_complete_copy, dot_entries


def _check_moves(store, model_src, model_digest, expected_how):
    v1 = store.stage("m", model_src)
    staged_inode = os.stat(store.version_path("staging", "m", v1)).st_ino
    path = store.promote("m", v1, run_id="x")
    assert path == store.base_path("production", "m") / "1"
    assert_complete_copy(path, model_digest)
    assert not store.version_path("staging", "m", v1).exists()  # the staging copy is gone
    assert dot_entries(store.base_path("production", "m")) == []
    assert dot_entries(store.base_path("staging", "m")) == []
    record = store.history("m")[-1]
    assert record.operation == "promote" and record.detail["moved_by"] == expected_how
    if expected_how == "copy":
        assert os.stat(path).st_ino != staged_inode or os.stat(path).st_dev != os.stat(store.root).st_dev

    # Out of production again: reject (undo of a promote), rollback, retirement.
    v2 = store.stage("m", model_src)
    store.promote("m", v2)
    store.reject("m", v2, "smoke query failed")
    assert store.versions("m", "production") == [1]
    assert_complete_copy(store.version_path("rejected", "m", v2), model_digest)
    for _ in range(4):
        store.promote("m", store.stage("m", model_src))
    assert store.versions("m", "production") == [4, 5, 6]
    assert store.rollback("m").to_version == 5
    assert store.versions("m", "rejected") == [1, 2, 3, 6]
    for v in (1, 2, 3, 6):
        assert_complete_copy(store.version_path("rejected", "m", v), model_digest)
    moves = {r.detail.get("moved_by") for r in store.history("m") if r.from_area == "production"}
    assert moves == {expected_how}


def test_promote_onto_another_filesystem(tmp_path, other_fs, model_src, model_digest):
    assert os.stat(other_fs).st_dev != os.stat(tmp_path).st_dev
    store = ModelStore(tmp_path / "store", areas={"production": other_fs / "production"})
    _check_moves(store, model_src, model_digest, "copy")


def test_same_filesystem_is_a_rename(tmp_path, model_src, model_digest):
    _check_moves(ModelStore(tmp_path / "store"), model_src, model_digest, "rename")


def test_exdev_path_without_a_second_filesystem(tmp_path, model_src, model_digest, monkeypatch):
    """The copy path, forced by making every rename between different directories fail with EXDEV."""
    real = fsutil.rename_noreplace

    def exdev_between_areas(src, dst):
        areas = {"staging", "production", "rejected"}
        if set(os.fspath(src).split(os.sep)) & areas != set(os.fspath(dst).split(os.sep)) & areas:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), os.fspath(src), None, os.fspath(dst))
        return real(src, dst)

    monkeypatch.setattr(fsutil, "rename_noreplace", exdev_between_areas)
    _check_moves(ModelStore(tmp_path / "store"), model_src, model_digest, "copy")


def test_not_enough_space_on_the_other_filesystem(tmp_path, model_src, monkeypatch):
    import shutil
    from collections import namedtuple

    from servegate.model_store import NotEnoughSpace
    from tests.model_store.treeutil import diff_snapshots, snapshot_tree

    real = fsutil.rename_noreplace
    monkeypatch.setattr(fsutil, "rename_noreplace", lambda s, d: (_ for _ in ()).throw(
        OSError(errno.EXDEV, "cross-device", os.fspath(s))) if "production" in os.fspath(d) else real(s, d))
    store = ModelStore(tmp_path / "store")
    v = store.stage("m", model_src)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(100, 99, 1))
    before = snapshot_tree(store.root)
    with pytest.raises(NotEnoughSpace, match="bytes free"):
        store.promote("m", v)
    after = snapshot_tree(store.root)
    # nothing moved; only the (empty) production base dir was created for the attempt
    assert [c for c in diff_snapshots(before, after) if not c.startswith("added production")] == []
    assert store.versions("m", "staging") == [v]
