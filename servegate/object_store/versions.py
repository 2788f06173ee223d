"""A model's versions in the bucket: numbers claimed create-only, files uploaded under the version's own
prefix, the manifest written last (create-only), and the cleanup of uploads whose worker died.

Keys under the store root::

    models/NAME/claims/N.json              who took number N (never deleted: a number is never reused)
    models/NAME/versions/N/files/<path>    the version's files
    models/NAME/versions/N/manifest.json   every file's size and sha256; the version exists once this does
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from servegate.errors import ConfigError
from servegate.model_store.fsutil import checkpoint
from servegate.object_store.connect import call, is_missing, is_precondition_failed, translate
from servegate.object_store.errors import ObjectStoreError
from servegate.object_store.location import S3Location
from servegate.object_store.records import Claim, FileEntry, Manifest

#: How long a claimed number's upload is protected from cleanup.
DEFAULT_LEASE_SECONDS = 3600.0
#: The environment variable that sets it for the uploads a process claims (seconds).
LEASE_ENV = "SERVEGATE_UPLOAD_LEASE_S"
_CLAIM_ATTEMPTS = 64


def model_key(location: S3Location, name: str, *parts: str) -> str:
    return location.key("models", name, *parts)


def claim_key(location: S3Location, name: str, version: int) -> str:
    return model_key(location, name, "claims", f"{version}.json")


def files_prefix(location: S3Location, name: str, version: int) -> str:
    return model_key(location, name, "versions", str(version), "files") + "/"


def manifest_key(location: S3Location, name: str, version: int) -> str:
    return model_key(location, name, "versions", str(version), "manifest.json")


def list_objects(client: Any, location: S3Location, prefix: str) -> list[dict]:
    """Every object under ``prefix`` as the listing gives it (``Key``, ``Size``, ``ETag``, ...), all pages."""
    objects: list[dict] = []
    kwargs = {"Bucket": location.bucket, "Prefix": prefix}
    while True:
        page = call(client, location, f"listing {prefix}", "list_objects_v2", **kwargs)
        objects += page.get("Contents", [])
        if not page.get("IsTruncated"):
            return objects
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def list_keys(client: Any, location: S3Location, prefix: str) -> list[str]:
    return [item["Key"] for item in list_objects(client, location, prefix)]


def claimed_numbers(client: Any, location: S3Location, name: str) -> list[int]:
    prefix = model_key(location, name, "claims") + "/"
    numbers = []
    for key in list_keys(client, location, prefix):
        stem = key[len(prefix):].removesuffix(".json")
        if stem.isdigit():
            numbers.append(int(stem))
    return sorted(numbers)


def lease_from_environment() -> float:
    """The lease this process's claims carry: ``SERVEGATE_UPLOAD_LEASE_S``, else an hour.

    A cleanup reads the lease from the claim itself, so only the claimer's setting counts. Shorter
    frees a dead worker's number and files sooner; it must stay longer than any live upload."""
    raw = os.environ.get(LEASE_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{LEASE_ENV}: found {raw!r}; expected a number of seconds greater than 0 (the lease "
                          "that protects an upload in progress from cleanup; default 3600)", subject=LEASE_ENV)
    return value


def claim_version(client: Any, location: S3Location, name: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                  run_id: str | None = None) -> int:
    """The next number, taken with a create-only write: on 412 another worker took it, try the next."""
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": run_id}
    number = (claimed_numbers(client, location, name) or [0])[-1] + 1
    for _ in range(_CLAIM_ATTEMPTS):
        claim = Claim(number, holder, time.time(), lease_seconds)
        if _create(client, location, claim_key(location, name, number), claim.to_json(), f"claiming version {number}"):
            return number
        number += 1
    raise ObjectStoreError(f"{location.uri}: could not claim a version number for {name!r} after "
                           f"{_CLAIM_ATTEMPTS} tries (other workers kept taking them)", subject=location.source)


def _create(client: Any, location: S3Location, key: str, body: bytes, doing: str) -> bool:
    """Create ``key`` only if it does not exist; False when it does (412)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.put_object(Bucket=location.bucket, Key=key, Body=body, IfNoneMatch="*",
                          ContentType="application/json")
        return True
    except ClientError as exc:
        if is_precondition_failed(exc):
            return False
        raise translate(exc, location, client, doing) from exc
    except BotoCoreError as exc:
        raise translate(exc, location, client, doing) from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def upload_version(client: Any, location: S3Location, name: str, version: int, source: Path,
                   *, run_id: str | None = None, workers: int = 8) -> Manifest:
    """Upload every file of ``source`` under the version's prefix, then publish its manifest.

    A reader lists versions by their manifests, so until the last call returns nothing of this
    version is visible; a worker killed before it leaves only objects the cleanup removes."""
    from boto3.s3.transfer import TransferConfig

    files = sorted(p for p in source.rglob("*") if p.is_file())
    transfer = TransferConfig(max_concurrency=workers)
    prefix = files_prefix(location, name, version)

    def one(path: Path) -> FileEntry:
        relative = path.relative_to(source).as_posix()
        entry = FileEntry(relative, path.stat().st_size, sha256_of(path))
        call(client, location, f"uploading {relative}", "upload_file", Filename=str(path), Bucket=location.bucket,
             Key=prefix + relative, Config=transfer)
        checkpoint("s3-stage:file-uploaded")
        return entry

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(files)))) as pool:
        entries = list(pool.map(one, files))
    manifest = Manifest(name, version, entries, datetime.now(timezone.utc).isoformat(), run_id)
    if not _create(client, location, manifest_key(location, name, version), manifest.to_json(),
                   f"publishing version {version}'s manifest"):
        raise ObjectStoreError(
            f"{location.uri}: version {version} of {name!r} was abandoned while it uploaded (its lease of the "
            "number expired and a cleanup retired it); deploy again for a new number", subject=location.source)
    checkpoint("s3-stage:published")
    return manifest


def read_manifest(client: Any, location: S3Location, name: str, version: int) -> Manifest | None:
    """The version's manifest; None when the version does not exist (no manifest, or a tombstone)."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = manifest_key(location, name, version)
    try:
        body = client.get_object(Bucket=location.bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        if is_missing(exc):
            return None
        raise translate(exc, location, client, f"reading {key}") from exc
    manifest = Manifest.from_json(body)
    return manifest if manifest.exists else None


@dataclass
class VersionListing:
    published: list[int]        # complete manifests: the versions that exist
    in_progress: list[int]      # claimed, no manifest, lease not expired
    cleaned: list[int]          # claimed, no manifest, lease expired: retired now


def list_versions(client: Any, location: S3Location, name: str, *, clean: bool = True,
                  now: float | None = None) -> VersionListing:
    """The model's versions; with ``clean``, the uploads of dead workers (lease expired) are retired:
    a tombstone manifest is written create-only (so the late uploader cannot publish), then the files go."""
    now = time.time() if now is None else now
    listing = VersionListing([], [], [])
    for number in claimed_numbers(client, location, name):
        key = manifest_key(location, name, number)
        try:
            manifest = Manifest.from_json(client.get_object(Bucket=location.bucket, Key=key)["Body"].read())
        except Exception as exc:  # noqa: BLE001 - only a missing manifest is expected; the rest is translated
            if not is_missing(exc):
                raise translate(exc, location, client, f"reading {key}") from exc
            manifest = None
        if manifest is not None:
            if manifest.exists:
                listing.published.append(number)
            elif clean and manifest.abandoned:
                # a cleaner killed between the tombstone and the deletion left files: finish its work
                delete_prefix(client, location, files_prefix(location, name, number))
            continue
        claim = Claim.from_json(call(client, location, "reading a claim", "get_object", Bucket=location.bucket,
                                     Key=claim_key(location, name, number))["Body"].read())
        if now < claim.claimed_at + claim.lease_seconds or not clean:
            listing.in_progress.append(number)
        elif retire(client, location, name, number):
            listing.cleaned.append(number)
        else:
            listing.published.append(number)  # its uploader published just before the tombstone
    return listing


def retire(client: Any, location: S3Location, name: str, version: int) -> bool:
    """Tombstone an unpublished version and delete its files; False when it got published meanwhile."""
    tombstone = Manifest(name, version, [], datetime.now(timezone.utc).isoformat(), abandoned=True)
    if not _create(client, location, manifest_key(location, name, version), tombstone.to_json(),
                   f"retiring version {version}"):
        return read_manifest(client, location, name, version) is None
    delete_prefix(client, location, files_prefix(location, name, version))
    return True


def delete_prefix(client: Any, location: S3Location, prefix: str) -> None:
    keys = list_keys(client, location, prefix)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start:start + 1000]]
        call(client, location, f"deleting {prefix}", "delete_objects", Bucket=location.bucket,
             Delete={"Objects": batch, "Quiet": True})
