"""deploy_newest_export's decisions: which export is newest, and whether it is newer than production."""

from __future__ import annotations

import os
import time

import pytest

from servegate.errors import ConfigError
from servegate.flows.watch import last_promotion_time, newest_export, reference_for


def _touch(path, mtime):
    os.utime(path, (mtime, mtime))
    return path


def test_newest_export_among_models_only(tmp_path, tiny_savedmodel):
    now = time.time()
    (tmp_path / "old.keras").write_bytes(b"x")
    _touch(tmp_path / "old.keras", now - 100)
    (tmp_path / "notes.txt").write_text("newest, but not a model")
    _touch(tmp_path / "notes.txt", now)
    (tmp_path / "mid.h5").write_bytes(b"x")
    _touch(tmp_path / "mid.h5", now - 50)
    assert newest_export(tmp_path).name == "mid.h5"
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes((tiny_savedmodel / "saved_model.pb").read_bytes())
    _touch(sm, now - 10)
    assert newest_export(tmp_path).name == "sm"
    assert reference_for(tmp_path / "mid.h5", None) == tmp_path / "mid-reference.parquet"
    assert reference_for(tmp_path / "mid.h5", "/r.csv").as_posix() == "/r.csv"


def test_empty_and_missing_folders(tmp_path):
    assert newest_export(tmp_path) is None
    with pytest.raises(ConfigError, match="nope"):
        newest_export(tmp_path / "nope")


def test_not_newer_than_production_is_a_quiet_run(tmp_path, tiny_savedmodel, prefect_harness):
    from servegate.flows.watch import deploy_newest_export
    from servegate.model_store import ModelStore

    watch = tmp_path / "exports"
    watch.mkdir()
    model = watch / "m.keras"
    model.write_bytes(b"PK")
    _touch(model, time.time() - 3600)
    store = ModelStore(tmp_path / "store")
    assert last_promotion_time(store, "w") is None
    store.promote("w", store.stage("w", tiny_savedmodel))
    assert last_promotion_time(store, "w") is not None
    result = deploy_newest_export(watch_dir=str(watch), name="w", store=str(tmp_path / "store"))
    assert result == {"deployed": False, "reason": "not newer than production", "model_path": str(model)}
    assert deploy_newest_export(watch_dir=str(tmp_path / "store" / "staging"), name="w",
                                store=str(tmp_path / "store"))["reason"] == "no exported model"
