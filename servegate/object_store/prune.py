"""Deleting the files of versions that left production: retired by retention, rejected, rolled back.

The local store keeps such versions as directories in ``rejected/``; a bucket is billed by the byte, so
here their files are deleted and only their manifest stays, marked ``deleted_at`` (the record of what
the version was; a reader no longer lists, downloads or promotes it). A version is deleted only when

- production.json does not list it as served (a rollback target), and names it in its rejected set
  (a rejected version never comes back: a promotion of it is refused), and
- no ``servegate sync`` heartbeat reports it present, AVAILABLE or wanted, whatever the heartbeat's
  age: a node that went quiet may come back with it on disk. Delete ``fleet/NODE.json`` of a node taken
  out of service to release what it held.

The manifest is marked first, then the files go: a process killed in between leaves a marked version
whose remaining files the next prune deletes; a sync that read production before a rollback and
downloads the version meanwhile fails whole (a file is missing or the manifest is gone) and places
nothing. The claim stays, so the number is never handed out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from servegate.object_store.connect import call, is_missing, is_precondition_failed, translate
from servegate.object_store.location import S3Location
from servegate.object_store.production import read_production
from servegate.object_store.records import Manifest
from servegate.object_store.sync import read_heartbeats
from servegate.object_store.versions import delete_prefix, files_prefix, manifest_key


@dataclass
class PruneReport:
    deleted: list[int] = field(default_factory=list)        # versions whose files this call deleted
    kept: dict[str, str] = field(default_factory=dict)      # version -> why its files stay (a node holds it)


def held_by_nodes(client: Any, location: S3Location, name: str) -> dict[int, str]:
    """Every version of ``name`` a heartbeat reports present, AVAILABLE or wanted -> the nodes, named."""
    held: dict[int, list[str]] = {}
    for beat in read_heartbeats(client, location):
        report = beat.get("models", {}).get(name)
        if report is None:
            continue
        versions = set(report.get("present") or []) | set(report.get("available") or [])
        if report.get("wanted") is not None:
            versions.add(report["wanted"])
        for version in versions:
            held.setdefault(int(version), []).append(str(beat.get("node")))
    return {version: "reported by node " + ", ".join(sorted(nodes)) for version, nodes in held.items()}


def _has_files(client: Any, location: S3Location, prefix: str) -> bool:
    page = call(client, location, f"listing {prefix}", "list_objects_v2", Bucket=location.bucket, Prefix=prefix,
                MaxKeys=1)
    return bool(page.get("KeyCount", 0))


def _mark_deleted(client: Any, location: S3Location, name: str, version: int) -> None:
    """Replace the manifest by its ``deleted_at`` copy (If-Match: the one read, so nothing else is lost)."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = manifest_key(location, name, version)
    try:
        response = client.get_object(Bucket=location.bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        if is_missing(exc):
            return  # nothing published under this number (its upload's files go all the same)
        raise translate(exc, location, client, f"reading {key}") from exc
    manifest = Manifest.from_json(response["Body"].read())
    if not manifest.exists:
        return
    marked = replace(manifest, deleted_at=datetime.now(timezone.utc).isoformat())
    try:
        client.put_object(Bucket=location.bucket, Key=key, Body=marked.to_json(), ContentType="application/json",
                          IfMatch=response["ETag"])
    except (ClientError, BotoCoreError) as exc:
        if not is_precondition_failed(exc):
            raise translate(exc, location, client, f"marking version {version} deleted") from exc


def prune(client: Any, location: S3Location, name: str) -> PruneReport:
    """Delete the files of ``name``'s versions that left production and that no node holds (module doc)."""
    held = held_by_nodes(client, location, name)  # first: a node that reports later reads a newer production
    state, _ = read_production(client, location, name)
    report = PruneReport()
    for version in sorted(int(v) for v in state.rejected):
        if version in state.served:
            continue
        prefix = files_prefix(location, name, version)
        if not _has_files(client, location, prefix):
            continue  # deleted before (one listing per version that left production, nothing more)
        if version in held:
            report.kept[str(version)] = held[version]
            continue
        _mark_deleted(client, location, name, version)
        delete_prefix(client, location, prefix)
        report.deleted.append(version)
    return report
