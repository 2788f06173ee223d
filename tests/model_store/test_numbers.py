"""Version numbers are never handed out twice: not after reject, rollback, retirement or deletion."""

from __future__ import annotations

import json
import shutil

from servegate.model_store import ModelStore


def test_numbers_never_reused(tmp_path, model_src):
    store = ModelStore(tmp_path / "s", retention=2)
    seen = []

    def stage():
        v = store.stage("m", model_src)
        assert v not in seen, f"{v} handed out twice"
        seen.append(v)
        return v

    v = stage()
    store.reject("m", v, "bad")                       # reject from staging
    assert stage() == 2
    store.promote("m", 2)
    store.promote("m", stage())                      # 3
    store.rollback("m")                              # 3 -> rejected (rolled back)
    assert stage() == 4
    store.promote("m", 4)
    store.reject("m", 4, "smoke failed")             # reject from production
    # deletion by hand of the newest version, wherever it is
    v5 = stage()
    shutil.rmtree(store.version_path("staging", "m", v5))
    assert stage() == 6
    # delete every version directory by hand: the counter remembers
    for area in ("staging", "production", "rejected"):
        shutil.rmtree(store.base_path(area, "m"))
    assert stage() == 7
    # lose the counter file too: the history still names every number
    store.layout.counter_file("m").unlink()
    assert stage() == 8
    # lose the history but keep the counter
    store.layout.history_file("m").unlink()
    assert stage() == 9
    # retirement (retention 2) moves old production versions out; their numbers stay used
    for _ in range(3):
        store.promote("m", stage())
    assert store.versions("m", "production") == [11, 12]
    assert stage() == 13
    assert seen == list(range(1, 14))
    assert json.loads(store.layout.counter_file("m").read_text()) == {"last_version": 13}


def test_counter_survives_a_corrupt_counter_file(tmp_path, model_src):
    store = ModelStore(tmp_path / "s")
    store.stage("m", model_src)
    store.stage("m", model_src)
    store.layout.counter_file("m").write_text("garbage")
    assert store.stage("m", model_src) == 3
