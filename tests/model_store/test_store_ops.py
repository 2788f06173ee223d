"""stage / promote / reject / rollback / retention / history / status, on a real filesystem."""

from __future__ import annotations

import json
import os
import threading

import pytest

from servegate.model_store import (
    HistoryRecord,
    ModelStore,
    NotNewerThanProduction,
    RollbackResult,
    StoreStatus,
    fsutil,
)
from servegate.model_store.locking import lock_is_held
from tests.model_store.treeutil import assert_complete_copy, dot_entries, version_dirs


def test_stage_copies_a_complete_version(store, model_src, model_digest):
    v = store.stage("m", model_src, run_id="run-1")
    assert v == 1
    path = store.version_path("staging", "m", v)
    assert path == store.root / "staging" / "m" / "1"
    assert_complete_copy(path, model_digest)
    assert dot_entries(store.base_path("staging", "m")) == []
    [record] = store.history("m")
    assert (record.operation, record.version, record.from_area, record.to_area, record.run_id) == \
        ("stage", 1, None, "staging", "run-1")
    assert record.detail["source"] == str(model_src)


def test_promote_is_a_rename(store, model_src, model_digest):
    v = store.stage("m", model_src)
    staged = store.version_path("staging", "m", v)
    inode = os.stat(staged).st_ino
    path = store.promote("m", v, run_id="r")
    assert path == store.base_path("production", "m") / str(v)
    assert os.stat(path).st_ino == inode  # the same directory, renamed: not a copy
    assert not staged.exists()
    assert_complete_copy(path, model_digest)
    record = store.history("m")[-1]
    assert (record.operation, record.from_area, record.to_area, record.detail["moved_by"]) == \
        ("promote", "staging", "production", "rename")
    assert store.serving_version("m") == v


def test_promote_again_returns_the_production_path(store, model_src):
    v = store.stage("m", model_src)
    first = store.promote("m", v)
    n = len(store.history("m"))
    assert store.promote("m", v) == first
    assert len(store.history("m")) == n


def test_reject_from_staging_keeps_the_reason_beside(store, model_src, model_digest):
    v = store.stage("m", model_src)
    path = store.reject("m", v, "parity check failed: 3 of 64 rows", run_id="r9")
    assert path == store.base_path("rejected", "m") / str(v)
    assert_complete_copy(path, model_digest)
    reason = json.loads((path.parent / f"{v}.reason.json").read_text())
    assert reason["reason"] == "parity check failed: 3 of 64 rows"
    assert reason["from_area"] == "staging" and reason["run_id"] == "r9"
    assert store.status("m").rejected_reasons == {v: "parity check failed: 3 of 64 rows"}
    # again: same path, nothing new
    assert store.reject("m", v, "again") == path


def test_reject_from_production_undoes_a_promote(store, model_src):
    v1 = store.stage("m", model_src)
    store.promote("m", v1)
    v2 = store.stage("m", model_src)
    store.promote("m", v2)
    store.reject("m", v2, "production smoke query failed")
    assert store.versions("m", "production") == [v1]
    assert store.serving_version("m") == v1
    assert store.history("m")[-1].from_area == "production"


def test_rollback_to_previous_and_to_named(store, model_src):
    versions = [store.stage("m", model_src) for _ in range(4)]
    for v in versions:
        store.promote("m", v)
    store2 = ModelStore(store.root, retention=10)
    assert store2.versions("m", "production") == versions[-3:]  # retention 3 retired the first
    result = store.rollback("m", run_id="rb-1")
    assert isinstance(result, RollbackResult)
    assert (result.from_version, result.to_version, result.rejected, result.changed) == (4, 3, [4], True)
    assert store.versions("m", "production") == [2, 3]
    assert store.status("m").rejected_reasons[4] == "rolled back"
    # named target, two steps at once (newest first)
    store.promote("m", store.stage("m", model_src))  # 5
    result = store.rollback("m", to_version=2)
    assert result.rejected == [5, 3] and store.versions("m", "production") == [2]
    records = [r for r in store.history("m") if r.operation == "rollback"]
    assert [r.version for r in records] == [4, 5, 3]
    assert all(r.reason == "rolled back" and r.to_area == "rejected" for r in records)
    # to the version production already serves: nothing changes
    result = store.rollback("m", to_version=2)
    assert result.changed is False and result.rejected == []


def test_retention_retires_to_rejected(tmp_path, model_src, model_digest):
    store = ModelStore(tmp_path / "s", retention=2)
    for _ in range(5):
        store.promote("m", store.stage("m", model_src))
    assert store.versions("m", "production") == [4, 5]
    assert store.versions("m", "rejected") == [1, 2, 3]
    reasons = store.status("m").rejected_reasons
    assert all(reasons[v].startswith("retired") for v in (1, 2, 3))
    for v in (1, 2, 3):
        assert_complete_copy(store.version_path("rejected", "m", v), model_digest)
    assert [r.version for r in store.history("m") if r.operation == "retire"] == [1, 2, 3]
    assert store.stage("m", model_src) == 6


def test_retention_must_be_positive(tmp_path):
    from servegate.model_store import StoreError

    for bad in (0, -1, 1.5, True):
        with pytest.raises(StoreError, match="retention"):
            ModelStore(tmp_path, retention=bad)


def test_status(store, model_src):
    v1 = store.stage("m", model_src)
    store.promote("m", v1)
    v2 = store.stage("m", model_src)
    v3 = store.stage("m", model_src)
    store.reject("m", v3, "bad")
    status = store.status("m", history_limit=2)
    assert isinstance(status, StoreStatus)
    assert status.exists
    assert status.versions == {"staging": [v2], "production": [v1], "rejected": [v3]}
    assert status.serving_version == v1
    assert status.next_version == 4
    assert status.base_paths["production"] == str(store.root / "production" / "m")
    assert len(status.history) == 2 and all(isinstance(r, HistoryRecord) for r in status.history)
    assert status.lock_holder is None and status.leftovers == []
    data = json.loads(json.dumps(status.to_dict()))
    assert data["rejected_reasons"] == {"3": "bad"}
    with store.lock("m", operation="deploy", run_id="run-7"):
        holder = store.status("m").lock_holder
        assert holder["pid"] == os.getpid() and holder["operation"] == "deploy" and holder["run_id"] == "run-7"


def test_status_of_an_unknown_model_is_empty_and_writes_nothing(tmp_path):
    store = ModelStore(tmp_path / "nothing-here")
    status = store.status("m")
    assert not status.exists and status.serving_version is None and status.next_version == 1
    assert not (tmp_path / "nothing-here").exists()


def test_history_limit_and_torn_line(store, model_src):
    for _ in range(3):
        store.stage("m", model_src)
    history_file = store.layout.history_file("m")
    with open(history_file, "ab") as fh:
        fh.write(b'{"time": "2020-01-01", "model": "m", "vers')  # a writer died mid-line
    assert [r.version for r in store.history("m")] == [1, 2, 3]
    store.stage("m", model_src)
    assert [r.version for r in store.history("m")] == [1, 2, 3, 4]
    assert [r.version for r in store.history("m", limit=2)] == [3, 4]
    assert store.history("m", limit=0) == []
    lines = history_file.read_bytes().splitlines()
    assert json.loads(lines[-1])["version"] == 4


def test_lock_is_reentrant_and_excludes_other_threads(tmp_path, model_src):
    store = ModelStore(tmp_path / "s", lock_timeout=0.3)
    v = store.stage("m", model_src)
    errors = []

    def other_thread():
        try:
            store.stage("m", model_src)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    with store.lock("m", operation="deploy"):
        store.promote("m", v)  # same thread: does not wait
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert len(errors) == 1 and type(errors[0]).__name__ == "LockTimeout"
    assert str(os.getpid()) in str(errors[0]) and "deploy" in str(errors[0])
    assert not lock_is_held(store.layout.lock_file("m"))
    assert not store.layout.holder_file("m").exists()
    assert store.layout.lock_file("m").exists()  # kept: waiters share one inode


def test_threads_staging_and_promoting(tmp_path, model_src, model_digest):
    store = ModelStore(tmp_path / "s", retention=100)
    results, errors = [], []

    def work():
        try:
            v = store.stage("m", model_src)
            results.append(v)
            try:
                store.promote("m", v)
            except NotNewerThanProduction:
                pass
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    for path in version_dirs(store.base_path("production", "m")).values():
        assert_complete_copy(path, model_digest)


def test_areas_can_live_elsewhere(tmp_path, model_src):
    store = ModelStore(tmp_path / "root", areas={"production": tmp_path / "serving" / "models"})
    v = store.stage("m", model_src)
    path = store.promote("m", v)
    assert path == tmp_path / "serving" / "models" / "m" / "1"
    assert store.base_path("production", "m") == tmp_path / "serving" / "models" / "m"


def test_existing_tf_serving_style_versions_are_understood(tmp_path, hp2_src):
    """A production base path seeded by hand with a zero-padded version (TF Serving's own test data)."""
    import shutil

    store = ModelStore(tmp_path / "s")
    shutil.copytree(hp2_src, tmp_path / "s" / "production" / "hp2" / "00000123")
    assert store.serving_version("hp2") == 123
    assert store.version_path("production", "hp2", 123).name == "00000123"
    assert store.stage("hp2", hp2_src) == 124
    store.promote("hp2", 124)
    assert store.rollback("hp2").to_version == 123
    # the hand-made version got a history record from recovery
    assert any(r.version == 123 and r.operation == "recover" for r in store.history("hp2"))


def test_fsync_helpers_write_atomically(tmp_path):
    target = tmp_path / "f"
    fsutil.write_atomic(target, b"one")
    fsutil.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]
    (tmp_path / "d").mkdir()
    with pytest.raises(FileExistsError):
        fsutil.rename_noreplace(tmp_path / "d", tmp_path / "f")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileExistsError):  # a plain rename would silently replace the empty directory
        fsutil.rename_noreplace(tmp_path / "d", tmp_path / "empty")
