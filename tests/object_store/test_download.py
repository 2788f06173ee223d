"""``download_version`` against a real SeaweedFS: each file hashed as its bytes arrive, a large file in
ranged parts included, and an object missing from the bucket reported by name with nothing placed."""

from __future__ import annotations

import os
import time

import pytest

from servegate.object_store import ObjectStoreError
from servegate.object_store import versions as v
from servegate.object_store.download import HashingWriter, download_version

PART = 64 << 10


def _ranges_requested(client) -> list[str]:
    """Every GetObject's Range header the client sends from now on; the request for the first part
    waits 0.3 s, so the later parts arrive before it."""
    seen: list[str] = []

    def record(params, **kwargs) -> None:
        seen.append(params.get("headers", {}).get("Range", ""))
        if seen[-1] == f"bytes=0-{PART - 1}":
            time.sleep(0.3)

    client.meta.events.register("before-call.s3.GetObject", record)
    return seen


def test_a_file_fetched_in_ranged_parts_is_hashed_in_order(seaweed, s3_store, tmp_path):
    source = tmp_path / "source"
    (source / "variables").mkdir(parents=True)
    big = os.urandom(40 * PART + 123)  # 41 parts, 8 at once, the first one late: they arrive out of order
    (source / "variables" / "variables.data-00000-of-00001").write_bytes(big)
    (source / "saved_model.pb").write_bytes(os.urandom(1000))
    manifest = s3_store.stage("m", source)
    client = seaweed.client()
    ranges = _ranges_requested(client)
    target = download_version(client, s3_store.location, manifest, tmp_path / "base" / "1", part_size=PART)
    assert len([r for r in ranges if r.startswith("bytes=")]) == 41  # the big file did go in parts
    assert (target / "variables" / "variables.data-00000-of-00001").read_bytes() == big
    for entry in manifest.files:  # what the writer hashed on the way is what lies on disk
        assert (v.sha256_of(target / entry.path), (target / entry.path).stat().st_size) == (entry.sha256, entry.size)
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["1"]


def test_the_writer_is_not_seekable():
    """s3transfer writes the ranged parts of a seekable target at their offsets as they come: a running
    hash needs the target it is given to be not seekable, so that the parts come in order."""
    from s3transfer.compat import seekable

    with open(os.devnull, "wb") as handle:
        assert not seekable(HashingWriter(handle))


def test_a_file_missing_from_the_bucket_is_named_and_nothing_is_placed(seaweed, s3_store, half_plus_two, tmp_path):
    manifest = s3_store.stage("m", half_plus_two)
    key = v.files_prefix(s3_store.location, "m", manifest.version) + "saved_model.pb"
    s3_store.client.delete_object(Bucket=s3_store.location.bucket, Key=key)
    with pytest.raises(ObjectStoreError, match="downloading saved_model.pb"):
        download_version(s3_store.client, s3_store.location, manifest, tmp_path / "base" / "1")
    assert list((tmp_path / "base").iterdir()) == []


def test_a_body_that_keeps_breaking_off_is_reported_as_the_endpoint_not_answering(tmp_path):
    """s3transfer's retries of a broken-off body end in RetriesExceededError: the read timeout inside it is
    what the user must act on (the named error a timeout gets everywhere else), not a bare traceback."""
    from botocore.exceptions import ReadTimeoutError
    from s3transfer.exceptions import RetriesExceededError

    from servegate.object_store import EndpointUnreachable, S3Location
    from servegate.object_store.download import _download_file
    from servegate.object_store.records import FileEntry, Manifest

    class Failing:
        def download(self, *args, **kwargs):
            return self

        def result(self):
            raise RetriesExceededError(ReadTimeoutError(endpoint_url="http://127.0.0.1:9"))

    class Client:
        class meta:
            endpoint_url = "http://127.0.0.1:9"

    entry = FileEntry("saved_model.pb", 3, "0" * 64)
    with pytest.raises(EndpointUnreachable, match="did not answer while downloading saved_model.pb"):
        _download_file(Failing(), Client(), S3Location("b", "p"), Manifest("m", 1, [entry]), "k", None, entry,
                       tmp_path / "saved_model.pb")


def test_a_copy_placed_meanwhile_is_kept_and_the_late_download_says_file_exists(s3_store, half_plus_two, tmp_path):
    """Two deploys on one worker may fetch one version into the cache at once: the one that renames second
    must fail FileExistsError (which the cache reads as "already placed"), not ENOTEMPTY, and leave
    nothing behind. A plain ``os.rename`` of a directory onto a non-empty one fails ENOTEMPTY."""
    manifest = s3_store.stage("m", half_plus_two)
    target = download_version(s3_store.client, s3_store.location, manifest, tmp_path / "base" / "1")
    placed = {p: p.stat().st_ino for p in target.rglob("*")}
    with pytest.raises(FileExistsError):
        download_version(s3_store.client, s3_store.location, manifest, target)
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["1"]
    assert {p: p.stat().st_ino for p in target.rglob("*")} == placed
