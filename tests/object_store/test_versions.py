"""Versions on a real SeaweedFS: numbers claimed create-only, manifests last, dead uploads retired."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from servegate.errors import ConfigError
from servegate.model_store.errors import UnknownVersion
from servegate.object_store import ObjectModelStore, ObjectStoreError
from servegate.object_store import versions as v


def test_stage_publishes_every_file_with_size_and_sha256(s3_store, half_plus_two):
    manifest = s3_store.stage("hp2", half_plus_two, run_id="run-1")
    assert manifest.version == 1
    local = {p.relative_to(half_plus_two).as_posix(): p for p in half_plus_two.rglob("*") if p.is_file()}
    assert {f.path for f in manifest.files} == set(local)
    for entry in manifest.files:
        assert entry.size == local[entry.path].stat().st_size
        assert entry.sha256 == v.sha256_of(local[entry.path])
    assert s3_store.manifest("hp2", 1).to_json() == manifest.to_json()
    assert s3_store.status("hp2").published == [1]


def test_two_workers_never_get_the_same_number(seaweed, s3_location):
    stores = [ObjectModelStore.open(s3_location, client=seaweed.client()) for _ in range(2)]

    def claim(store):
        return [v.claim_version(store.client, store.location, "m") for _ in range(6)]

    with ThreadPoolExecutor(2) as pool:
        numbers = [n for got in pool.map(claim, stores) for n in got]
    assert sorted(numbers) == list(range(1, 13))


def test_a_version_without_a_manifest_does_not_exist(s3_store, half_plus_two):
    number = v.claim_version(s3_store.client, s3_store.location, "m")
    some_file = next(p for p in half_plus_two.rglob("*") if p.is_file())
    s3_store.client.upload_file(str(some_file), s3_store.location.bucket,
                                v.files_prefix(s3_store.location, "m", number) + some_file.name)
    status = s3_store.status("m")
    assert status.published == [] and status.in_progress == [number]
    assert s3_store.manifest("m", number) is None
    with pytest.raises(UnknownVersion, match="no complete manifest"):
        s3_store.promote("m", number)


def test_a_dead_upload_is_retired_after_its_lease_and_its_number_never_reused(seaweed, s3_location, half_plus_two):
    dying = ObjectModelStore.open(s3_location, client=seaweed.client(), lease_seconds=0.5)
    number = v.claim_version(dying.client, dying.location, "m", lease_seconds=0.5)
    some_file = next(p for p in half_plus_two.rglob("*") if p.is_file())
    dying.client.upload_file(str(some_file), s3_location.bucket, v.files_prefix(s3_location, "m", number) + "x")
    assert dying.status("m").in_progress == [number]  # lease still held: left alone
    time.sleep(0.6)
    status = dying.status("m")
    assert status.cleaned == [number] and status.in_progress == [] and status.published == []
    assert v.list_keys(dying.client, s3_location, v.files_prefix(s3_location, "m", number)) == []
    # the late worker cannot publish the retired number; the next stage gets a new one
    with pytest.raises(ObjectStoreError, match="abandoned"):
        v.upload_version(dying.client, s3_location, "m", number, half_plus_two)
    assert dying.stage("m", half_plus_two).version == number + 1
    assert dying.status("m").published == [number + 1]


def test_a_live_upload_is_not_retired(s3_store, half_plus_two):
    number = v.claim_version(s3_store.client, s3_store.location, "m")
    s3_store.status("m")  # cleanup runs: the lease (an hour) protects it
    assert v.upload_version(s3_store.client, s3_store.location, "m", number, half_plus_two).version == number
    assert s3_store.status("m").published == [number]


def test_the_lease_comes_from_the_environment(seaweed, s3_location, monkeypatch):
    monkeypatch.delenv(v.LEASE_ENV, raising=False)
    assert ObjectModelStore.open(s3_location, client=seaweed.client()).lease_seconds == v.DEFAULT_LEASE_SECONDS
    monkeypatch.setenv(v.LEASE_ENV, "2.5")
    store = ObjectModelStore.open(s3_location, client=seaweed.client())
    number = v.claim_version(store.client, store.location, "m", lease_seconds=store.lease_seconds)
    claim = s3_location.key("models", "m", "claims", f"{number}.json")
    body = store.client.get_object(Bucket=s3_location.bucket, Key=claim)["Body"].read()
    assert store.lease_seconds == 2.5 and json.loads(body)["lease_seconds"] == 2.5


@pytest.mark.parametrize("raw", ["0", "-3", "soon", "inf", "nan"])
def test_a_lease_that_is_not_a_positive_number_is_refused(seaweed, s3_location, monkeypatch, raw):
    monkeypatch.setenv(v.LEASE_ENV, raw)
    with pytest.raises(ConfigError, match=f"SERVEGATE_UPLOAD_LEASE_S: found '{raw}'; expected a number") as caught:
        ObjectModelStore.open(s3_location, client=seaweed.client())
    assert caught.value.subject == v.LEASE_ENV
    assert v.list_keys(seaweed.client(), s3_location, s3_location.prefix + "/") == []
