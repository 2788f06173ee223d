"""Versions that leave production (retired by retention, rejected, rolled back) have their files deleted from
the bucket, against a real SeaweedFS; production's served stack and whatever a node reports are never deleted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servegate.errors import StoreError
from servegate.model_store import UnknownVersion
from servegate.object_store import ObjectModelStore
from servegate.object_store import production as p
from servegate.object_store import versions as v
from servegate.object_store.mirror import open_model_store
from servegate.object_store.records import Manifest
from servegate.object_store.sync import ModelReport, heartbeat_key, write_heartbeat

REPO_ROOT = Path(__file__).resolve().parents[2]


def _files(store: ObjectModelStore, name: str, version: int) -> list[str]:
    return v.list_keys(store.client, store.location, v.files_prefix(store.location, name, version))


def _raw_manifest(store: ObjectModelStore, name: str, version: int) -> Manifest:
    key = v.manifest_key(store.location, name, version)
    return Manifest.from_json(store.client.get_object(Bucket=store.location.bucket, Key=key)["Body"].read())


def _published(store: ObjectModelStore, name: str, source: Path, count: int) -> list[int]:
    return [store.stage(name, source).version for _ in range(count)]


@pytest.fixture
def store2(seaweed, s3_location) -> ObjectModelStore:
    """Retention 2: the third promotion retires the first."""
    return ObjectModelStore.open(s3_location, client=seaweed.client(), retention=2)


def test_retention_retires_the_oldest_and_deletes_its_files(store2, half_plus_two):
    one, two, three = _published(store2, "m", half_plus_two, 3)
    for version in (one, two):
        store2.promote("m", version)
    assert _files(store2, "m", one)  # within retention: a rollback target, kept
    assert store2.promote("m", three) == two
    state, _ = p.read_production(store2.client, store2.location, "m")
    assert state.served == [two, three]
    assert state.rejected == {str(one): "retired (retention keeps the newest 2 production versions)"}
    assert [h["operation"] for h in state.history] == ["promote", "promote", "promote", "retire"]
    assert _files(store2, "m", one) == [] and _raw_manifest(store2, "m", one).deleted_at
    assert all(_files(store2, "m", version) for version in (two, three))  # served: never deleted
    status = store2.status("m")
    assert (status.published, status.served, status.next_version) == ([two, three], [two, three], 4)
    assert store2.manifest("m", one) is None  # no reader lists or downloads it any more
    claims = v.claimed_numbers(store2.client, store2.location, "m")
    assert claims == [one, two, three]  # numbers are never reused


def test_rejected_and_rolled_back_versions_are_deleted_and_never_promoted_again(s3_store, half_plus_two):
    one, two, three = _published(s3_store, "m", half_plus_two, 3)
    s3_store.promote("m", one)
    s3_store.reject("m", three, "canary failed")
    assert _files(s3_store, "m", three) == []
    s3_store.promote("m", two)
    s3_store.rollback("m", reason="bad metrics")
    assert _files(s3_store, "m", two) == [] and _files(s3_store, "m", one)
    with pytest.raises(UnknownVersion, match="was rejected"):
        s3_store.promote("m", three)
    assert s3_store.status("m").published == [one]


def test_a_version_a_node_reports_is_kept_until_no_node_does(s3_store, half_plus_two):
    """The check that can fail: the same rollback deletes at once without the node's heartbeat (above)."""
    one, two = _published(s3_store, "m", half_plus_two, 2)
    s3_store.promote("m", one)
    s3_store.promote("m", two)
    write_heartbeat(s3_store.client, s3_store.location, "node-a",
                    {"m": ModelReport(wanted=two, present=[one, two], available=[two])})
    s3_store.rollback("m", reason="bad metrics")
    assert _files(s3_store, "m", two), "deleted while node-a still reports it"
    status = s3_store.status("m")
    assert status.kept == {str(two): "reported by node node-a"} and status.deleted == []
    # a node that went quiet still protects what it last reported (it may come back with it on disk)
    write_heartbeat(s3_store.client, s3_store.location, "node-a",
                    {"m": ModelReport(wanted=one, present=[one], available=[one])})
    status = s3_store.status("m")
    assert status.deleted == [two] and status.kept == {} and _files(s3_store, "m", two) == []
    assert _files(s3_store, "m", one)


def test_a_version_production_lists_as_served_is_never_deleted(s3_store, half_plus_two):
    """production.json written by hand (or by another tool) naming a version both served and rejected: the
    served stack wins; the same state without it in the stack deletes it."""
    one, two = _published(s3_store, "m", half_plus_two, 2)
    s3_store.promote("m", one)
    s3_store.promote("m", two)

    def rewrite(served: list[int]) -> None:
        state, etag = p.read_production(s3_store.client, s3_store.location, "m")
        state.served, state.rejected = served, {str(two): "by hand"}
        s3_store.client.put_object(Bucket=s3_store.location.bucket, Key=p.production_key(s3_store.location, "m"),
                                   Body=state.to_json(), IfMatch=etag)

    rewrite([one, two])
    assert s3_store.status("m").deleted == [] and _files(s3_store, "m", two)
    rewrite([one])
    assert s3_store.status("m").deleted == [two] and _files(s3_store, "m", two) == []


def test_a_wanted_version_is_kept_while_the_node_downloads_it(s3_store, half_plus_two):
    one, two = _published(s3_store, "m", half_plus_two, 2)
    s3_store.promote("m", one)
    s3_store.promote("m", two)
    write_heartbeat(s3_store.client, s3_store.location, "node-b", {"m": ModelReport(wanted=two, present=[one])})
    s3_store.rollback("m", reason="bad metrics")
    assert s3_store.status("m").kept == {str(two): "reported by node node-b"}
    s3_store.client.delete_object(Bucket=s3_store.location.bucket, Key=heartbeat_key(s3_store.location, "node-b"))
    assert s3_store.status("m").deleted == [two]  # the node taken out of service: its heartbeat removed


def test_a_cleaner_killed_after_the_tombstone_is_finished_by_the_next(s3_store, half_plus_two):
    number = v.claim_version(s3_store.client, s3_store.location, "m", lease_seconds=0.001)
    prefix = v.files_prefix(s3_store.location, "m", number)
    s3_store.client.put_object(Bucket=s3_store.location.bucket, Key=prefix + "saved_model.pb", Body=b"half")
    tombstone = Manifest("m", number, [], "", abandoned=True)
    s3_store.client.put_object(Bucket=s3_store.location.bucket, Key=v.manifest_key(s3_store.location, "m", number),
                               Body=tombstone.to_json())
    assert s3_store.status("m").published == [] and _files(s3_store, "m", number) == []


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_a_retention_that_is_not_a_positive_integer_is_refused_by_name(seaweed, s3_location, bad):
    with pytest.raises(StoreError, match="retention") as raised:
        ObjectModelStore.open(s3_location, client=seaweed.client(), retention=bad)
    assert raised.value.subject == "retention"


def test_a_local_store_option_a_bucket_cannot_apply_is_refused_by_name(s3_location, monkeypatch):
    with pytest.raises(StoreError, match="areas: not an option of a store in a bucket") as raised:
        open_model_store(s3_location, areas={"production": "/mnt/models"})
    assert raised.value.subject == "areas"


def test_status_deletes_what_left_production_from_the_command_line(tmp_path, seaweed, s3_store, half_plus_two):
    one, two = _published(s3_store, "m", half_plus_two, 2)
    s3_store.promote("m", one)
    s3_store.promote("m", two)
    write_heartbeat(s3_store.client, s3_store.location, "node-a", {"m": ModelReport(wanted=two, present=[two])})
    s3_store.rollback("m", reason="bad metrics")
    write_heartbeat(s3_store.client, s3_store.location, "node-a", {"m": ModelReport(wanted=one, present=[one])})
    env = {k: val for k, val in os.environ.items() if not k.startswith(("AWS_", "SERVEGATE_"))}
    env.update(seaweed.env(), HOME=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    shown = subprocess.run([sys.executable, "-m", "servegate", "status", "--name", "m", "--store",
                            s3_store.location.uri, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["deleted"], status["kept"], status["published"]) == ([two], {}, [one])
    assert _files(s3_store, "m", two) == [] and "Traceback" not in shown.stderr
    text = subprocess.run([sys.executable, "-m", "servegate", "status", "--name", "m", "--store",
                           s3_store.location.uri], capture_output=True, text=True, env=env, timeout=120)
    assert text.returncode == 0 and "deleted now" not in text.stdout  # nothing left to delete


def test_a_workers_copies_of_versions_deleted_from_the_bucket_are_dropped(seaweed, s3_location, half_plus_two,
                                                                          tmp_path, monkeypatch):
    """The worker's cache keeps what the bucket still publishes and drops what left it, at the next recovery."""
    from servegate.object_store.mirror import MirroredStore

    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    store = MirroredStore(s3_location, cache=tmp_path / "cache", retention=1)
    one, two, three = (store.stage("m", half_plus_two) for _ in range(3))
    store.promote("m", one)
    store.promote("m", two)  # retention 1: version one retired, its files deleted from the bucket
    store.reject("m", three, "quality")  # rejected: deleted from the bucket too
    cached = tmp_path / "cache" / "m"
    assert sorted(p.name for p in cached.iterdir()) == [str(one), str(two), str(three)]
    store.recover("m")
    assert sorted(p.name for p in cached.iterdir()) == [str(two)]
    assert (cached / str(two) / "saved_model.pb").exists()
    assert store.version_path("production", "m", two) == cached / str(two)
