"""Every bad input of issue 2: a named error, and the store byte-identical before and after."""

from __future__ import annotations

import os
import shutil

import pytest

from servegate.model_store import (
    InvalidModelName,
    ModelStore,
    NotASavedModel,
    NothingToRollBackTo,
    NotNewerThanProduction,
    StoreError,
    StoreNotWritable,
    UnknownModel,
    UnknownVersion,
)
from servegate.model_store.errors import InvalidVersion
from tests.model_store.treeutil import diff_snapshots, read_only_mount, snapshot_tree

BAD_NAMES = ["../x", "a/b", "", "x" * 300, "..", "/etc", ".hidden", "a..b"]


@pytest.fixture
def populated(store, model_src):
    """production: 1, 2; staging: 3; rejected: 4."""
    for _ in range(2):
        store.promote("m", store.stage("m", model_src))
    store.stage("m", model_src)
    store.reject("m", store.stage("m", model_src), "bad")
    return store


def _unchanged(store: ModelStore, call, error: type[Exception], *needles: str) -> StoreError:
    before = snapshot_tree(store.root)
    with pytest.raises(error) as err:
        call()
    assert isinstance(err.value, StoreError)
    message = str(err.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert diff_snapshots(before, snapshot_tree(store.root)) == []
    return err.value


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_everywhere(populated, model_src, name):
    shown = "empty" if not name else ("too long" if len(name) > 128 else repr(name))
    for call in (lambda: populated.stage(name, model_src), lambda: populated.promote(name, 3),
                 lambda: populated.reject(name, 3, "x"), lambda: populated.rollback(name),
                 lambda: populated.status(name), lambda: populated.history(name),
                 lambda: populated.recover(name), lambda: populated.lock(name).__enter__()):
        _unchanged(populated, call, InvalidModelName, "model name", shown)


def test_bad_name_on_an_empty_root_creates_nothing(tmp_path, model_src):
    store = ModelStore(tmp_path / "fresh")
    with pytest.raises(InvalidModelName):
        store.stage("../escape", model_src)
    assert not (tmp_path / "fresh").exists()
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("case", ["missing", "file", "empty", "not_savedmodel", "bad_half_plus_two", "garbage_pb",
                                  "no_serving_default", "no_variables_index", "fifo", "contains_store"])
def test_bad_sources(populated, tmp_path, hp2_src, tfs_testdata, case):
    src = tmp_path / "src"
    needle = None
    if case == "missing":
        needle = "does not exist"
    elif case == "file":
        src.write_text("not a directory")
        needle = "not a directory"
    elif case == "empty":
        src.mkdir()
        needle = "is empty"
    elif case == "not_savedmodel":
        src.mkdir()
        (src / "weights.h5").write_bytes(b"\x89HDF")
        needle = "no saved_model.pb"
    elif case == "bad_half_plus_two":
        src = tfs_testdata / "bad_half_plus_two" / "00000123"
        needle = "no saved_model.pb"
    elif case == "garbage_pb":
        shutil.copytree(hp2_src, src)
        (src / "saved_model.pb").write_bytes(os.urandom(64))
        needle = "saved_model.pb"
    elif case == "no_serving_default":
        src = tfs_testdata / "saved_model_counter" / "00000123"
        needle = "'serving_default'"
    elif case == "no_variables_index":
        shutil.copytree(hp2_src, src)
        (src / "variables" / "variables.index").unlink()
        needle = "variables.index"
    elif case == "fifo":
        shutil.copytree(hp2_src, src)
        os.mkfifo(src / "assets" / "pipe")
        needle = "pipe"
    elif case == "contains_store":
        src = populated.root.parent
        needle = "contains the store"
    _unchanged(populated, lambda: populated.stage("m", src), NotASavedModel, str(src), needle)
    # a new model name: nothing created for it either
    _unchanged(populated, lambda: populated.stage("fresh", src), NotASavedModel, str(src))


def test_root_is_a_regular_file(tmp_path, model_src):
    root = tmp_path / "store"
    root.write_text("I am a file")
    store = ModelStore(root)
    for call in (lambda: store.stage("m", model_src), lambda: store.promote("m", 1),
                 lambda: store.rollback("m"), lambda: store.status("m")):
        _unchanged(store, call, StoreNotWritable, str(root), "not a directory")
    assert root.read_text() == "I am a file"


def test_root_below_a_regular_file(tmp_path, model_src):
    (tmp_path / "file").write_text("x")
    store = ModelStore(tmp_path / "file" / "store")
    with pytest.raises(StoreNotWritable, match="cannot create store root"):
        store.stage("m", model_src)


def test_read_only_root(tmp_path, model_src):
    """A store on a read-only mount (chmod would not stop root): refused, nothing changed, still readable."""
    mount = tmp_path / "ro"
    with read_only_mount(mount) as make_read_only:
        if make_read_only is None:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        store = ModelStore(mount / "store")
        store.promote("m", store.stage("m", model_src))
        store.promote("m", store.stage("m", model_src))
        v3 = store.stage("m", model_src)
        make_read_only()
        for call in (lambda: store.stage("m", model_src), lambda: store.promote("m", v3),
                     lambda: store.reject("m", v3, "x"), lambda: store.rollback("m"),
                     lambda: store.stage("new", model_src)):
            _unchanged(store, call, StoreNotWritable, str(store.root), "read-only")
        status = store.status("m")  # reading still works
        assert status.serving_version == 2 and status.staging == [v3]


def test_promote_unknown_versions(populated):
    _unchanged(populated, lambda: populated.promote("m", 99), UnknownVersion, "version 99", "'m'", "staged versions: 3")
    _unchanged(populated, lambda: populated.promote("m", 4), UnknownVersion, "version 4", "rejected (bad)")
    for bad in (0, -3, "abc", True, 2.5):
        _unchanged(populated, lambda bad=bad: populated.promote("m", bad), InvalidVersion, repr(bad))
    _unchanged(populated, lambda: populated.promote("nope", 1), UnknownModel, "'nope'", str(populated.root))


def test_promote_older_than_production(populated, model_src):
    v5 = populated.stage("m", model_src)
    populated.promote("m", v5)
    _unchanged(populated, lambda: populated.promote("m", 3), NotNewerThanProduction, "version 3", "version 5")


def test_rollback_with_nothing_to_go_back_to(tmp_path, model_src):
    store = ModelStore(tmp_path / "s")
    store.stage("m", model_src)
    _unchanged(store, lambda: store.rollback("m"), NothingToRollBackTo, "'m'", "empty",
               str(store.base_path("production", "m")))
    store.promote("m", 1)
    _unchanged(store, lambda: store.rollback("m"), NothingToRollBackTo, "only version 1", "no older version")
    store.promote("m", store.stage("m", model_src))
    store.rollback("m")
    _unchanged(store, lambda: store.rollback("m"), NothingToRollBackTo, "only version 1")
    _unchanged(store, lambda: store.rollback("nope"), UnknownModel, "'nope'")


def test_rollback_to_versions_it_cannot_go_to(populated):
    _unchanged(populated, lambda: populated.rollback("m", to_version=3), UnknownVersion, "version 3",
               "newer than version 2")
    _unchanged(populated, lambda: populated.rollback("m", to_version=99), UnknownVersion, "version 99")
    populated.rollback("m")
    _unchanged(populated, lambda: populated.rollback("m", to_version=2), UnknownVersion, "version 2",
               "rejected")


def test_reject_bad_input(populated):
    _unchanged(populated, lambda: populated.reject("m", 42, "x"), UnknownVersion, "version 42")
    _unchanged(populated, lambda: populated.reject("m", 3, ""), StoreError, "needs a reason")
    _unchanged(populated, lambda: populated.reject("m", 3, None), StoreError, "needs a reason")
