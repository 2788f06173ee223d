"""Recovery: what a crashed change left behind is repaired by the next change."""

from __future__ import annotations

import json
import os
import shutil

from servegate.model_store import ModelStore, fsutil
from servegate.model_store.layout import new_token, tmp_name
from servegate.model_store.locking import InflightMarker
from tests.model_store.conftest import spawn_child
from tests.model_store.treeutil import dot_entries


def test_leftover_temp_dirs_of_dead_writers_are_removed(store, model_src):
    store.promote("m", store.stage("m", model_src))
    for area in ("staging", "production", "rejected"):
        base = store.base_path(area, "m")
        base.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_src, base / tmp_name("stage", 9, "123-deadbeef"))
    (store.base_path("production", "m") / ".not-ours").mkdir()  # someone else's dot dir: left alone
    (store.layout.meta_dir("m") / ".tmp-counter-1-ab").write_text("{")
    report = store.recover("m")
    assert len(report.actions) == 4
    for area in ("staging", "rejected"):
        assert dot_entries(store.base_path(area, "m")) == []
    assert dot_entries(store.base_path("production", "m")) == [".not-ours"]
    assert not (store.layout.meta_dir("m") / ".tmp-counter-1-ab").exists()
    assert store.stage("m", model_src) == 2


def test_a_live_stagers_temp_dir_is_kept(store, model_src, root):
    store.stage("m", model_src)
    token = new_token()
    marker = InflightMarker(store.layout.inflight_marker("m", token)).create()
    tmp = store.base_path("staging", "m") / tmp_name("stage", 5, token)
    tmp.mkdir()
    try:
        store.recover("m")
        assert tmp.exists()  # its owner (us) is alive
        # another process's recovery too
        proc = spawn_child("stage", {"root": str(root), "model": "m", "src": str(model_src)})
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert tmp.exists()
    finally:
        marker.release()
    store.recover("m")
    assert not tmp.exists()


def test_version_in_staging_and_production_keeps_production(store, model_src):
    v = store.stage("m", model_src)
    store.promote("m", v)
    shutil.copytree(store.version_path("production", "m", v), store.base_path("staging", "m") / str(v))
    report = store.recover("m")
    assert store.versions("m", "staging") == [] and store.versions("m", "production") == [v]
    assert any("complete in" in a for a in report.actions)


def test_version_in_production_and_rejected_keeps_production(store, model_src):
    v = store.stage("m", model_src)
    store.promote("m", v)
    rejected = store.base_path("rejected", "m")
    rejected.mkdir(parents=True)
    shutil.copytree(store.version_path("production", "m", v), rejected / str(v))
    (rejected / f"{v}.reason.json").write_text(json.dumps({"reason": "rolled back"}))
    store.recover("m")
    assert store.versions("m", "production") == [v] and store.versions("m", "rejected") == []
    assert not (rejected / f"{v}.reason.json").exists()


def test_differing_copies_are_left_alone(store, model_src):
    v = store.stage("m", model_src)
    store.promote("m", v)
    other = store.base_path("staging", "m") / str(v)
    shutil.copytree(store.version_path("production", "m", v), other)
    (other / "assets" / "foo.txt").write_text("different")
    report = store.recover("m")
    assert other.exists()
    assert any("differ" in a for a in report.actions)


def test_orphan_reason_file_is_removed(store, model_src):
    v = store.stage("m", model_src)
    rejected = store.base_path("rejected", "m")
    rejected.mkdir(parents=True)
    (rejected / f"{v}.reason.json").write_text("{}")
    (rejected / ".servegate-tmp-reason-7.reason.json-1-ab").write_text("{")
    store.recover("m")
    assert os.listdir(rejected) == []


def test_history_catches_up_with_moves_it_missed(store, model_src):
    v = store.stage("m", model_src)
    os.rename(store.version_path("staging", "m", v), store.base_path("staging", "m").parent / "gone")
    store.recover("m")
    last = store.history("m")[-1]
    assert (last.version, last.from_area, last.to_area, last.operation) == (v, "staging", None, "recover")
    assert "removed outside servegate" in last.reason
    n = len(store.history("m"))
    store.recover("m")
    assert len(store.history("m")) == n  # nothing new to say


def test_stale_holder_file_is_replaced_and_removed(store, model_src):
    store.stage("m", model_src)
    store.layout.holder_file("m").write_text(json.dumps({"pid": 999999, "host": "x", "since": "then"}))
    assert store.status("m").lock_holder is None  # the lock itself is free
    store.stage("m", model_src)
    assert not store.layout.holder_file("m").exists()


def test_recover_on_an_unknown_model_creates_nothing(tmp_path):
    store = ModelStore(tmp_path / "s")
    assert not store.recover("m")
    assert not (tmp_path / "s").exists()


def test_tree_digest_sees_content(tmp_path, model_src):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(model_src, a)
    shutil.copytree(model_src, b)
    assert fsutil.tree_digest(a) == fsutil.tree_digest(b)
    (b / "assets" / "foo.txt").write_text("changed")
    assert fsutil.tree_digest(a) != fsutil.tree_digest(b)
