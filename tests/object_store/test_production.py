"""production.json by compare-and-swap on a real SeaweedFS: promotions and rollbacks never lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from servegate.model_store.errors import NotNewerThanProduction, NothingToRollBackTo
from servegate.object_store import ObjectModelStore
from servegate.object_store import production as p


def _published(store, name, source, count):
    return [store.stage(name, source).version for _ in range(count)]


def test_promote_then_rollback(s3_store, half_plus_two):
    one, two = _published(s3_store, "m", half_plus_two, 2)
    assert s3_store.promote("m", one, run_id="r1") is None
    assert s3_store.promote("m", two, run_id="r2") == one
    with pytest.raises(NotNewerThanProduction):
        s3_store.promote("m", one)
    result = s3_store.rollback("m", reason="bad canary", run_id="r3")
    assert (result.from_version, result.to_version, result.rejected) == (two, one, [two])
    status = s3_store.status("m")
    assert status.serving_version == one and status.rejected_reasons == {str(two): "bad canary"}
    assert [h["operation"] for h in status.history] == ["promote", "promote", "rollback"]
    with pytest.raises(NothingToRollBackTo):
        s3_store.rollback("m")


def test_concurrent_promotions_never_interleave(seaweed, s3_location, half_plus_two):
    stores = [ObjectModelStore.open(s3_location, client=seaweed.client()) for _ in range(4)]
    numbers = _published(stores[0], "m", half_plus_two, 8)

    def promote(number):
        try:
            stores[number % 4].promote("m", number)
            return number
        except NotNewerThanProduction:
            return None

    with ThreadPoolExecutor(4) as pool:
        won = [n for n in pool.map(promote, numbers) if n is not None]
    state, _ = p.read_production(stores[0].client, s3_location, "m")
    # every winning promotion is in the history exactly once, in the order production saw them; retention
    # (3) retired the older winners in the same writes, each once
    promoted = [h["version"] for h in state.history if h["operation"] == "promote"]
    retired = [h["version"] for h in state.history if h["operation"] == "retire"]
    assert promoted == sorted(won) and state.served == sorted(won)[-3:] and retired == sorted(won)[:-3]
    assert state.serving == max(won) and state.generation == len(state.history)


def test_a_stale_writer_gets_412_and_re_judges(s3_store, half_plus_two):
    one, two = _published(s3_store, "m", half_plus_two, 2)
    s3_store.promote("m", one)
    seen = []

    def decide(state):
        seen.append(list(state.served))
        if len(seen) == 1:  # another writer promotes between this read and this write
            s3_store.promote("m", two)
        state.served.append(99)
        return state

    p.change(s3_store.client, s3_store.location, "m", decide)
    assert seen == [[one], [one, two]]
