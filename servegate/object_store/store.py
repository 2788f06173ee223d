""":class:`ObjectModelStore`: the model store on S3-compatible object storage.

Same promises as the local store, built on conditional writes instead of rename and flock: a version
is visible only once its manifest is complete, numbers are never handed out twice, each model's
production state changes by compare-and-swap, and a worker killed at any moment leaves nothing a
reader sees (its upload is retired by the next stage or status once its lease expires).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servegate.model_store.layout import check_model_name
from servegate.object_store import connect, production, versions
from servegate.object_store.location import S3Location
from servegate.object_store.records import Manifest


@dataclass
class ObjectStoreStatus:
    model: str
    root: str
    exists: bool
    serving_version: int | None
    served: list[int]                     # promoted and not rolled back, oldest first
    published: list[int]                  # every version with a complete manifest
    in_progress: list[int]                # uploads whose lease has not expired
    cleaned: list[int]                    # dead uploads this call retired
    rejected_reasons: dict[str, str] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    next_version: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ObjectRollback:
    model: str
    from_version: int
    to_version: int
    rejected: list[int]
    changed: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class ObjectModelStore:
    """Open with :meth:`open` (it runs every up-front check); ``client`` is a boto3 S3 client."""

    def __init__(self, location: S3Location, client: Any, *, exists: bool,
                 lease_seconds: float = versions.DEFAULT_LEASE_SECONDS):
        self.location = location
        self.client = client
        self.exists = exists
        self.lease_seconds = lease_seconds

    @classmethod
    def open(cls, location: S3Location, *, client: Any = None,
             lease_seconds: float | None = None) -> ObjectModelStore:
        """``lease_seconds``: the lease of the numbers this store claims (default: ``SERVEGATE_UPLOAD_LEASE_S``,
        else an hour), checked before anything is opened."""
        lease_seconds = versions.lease_from_environment() if lease_seconds is None else lease_seconds
        client = client if client is not None else connect.make_client()
        exists = connect.preflight(client, location)
        return cls(location, client, exists=exists, lease_seconds=lease_seconds)

    @property
    def root(self) -> str:
        return self.location.uri

    def _ensure_marker(self) -> None:
        if not self.exists:
            body = json.dumps({"kind": "servegate-store", "layout": 1}).encode()
            versions._create(self.client, self.location, self.location.key(connect.MARKER), body,
                             "marking the store")
            self.exists = True

    def models(self) -> list[str]:
        prefix = self.location.key("models") + "/"
        page = connect.call(self.client, self.location, "listing models", "list_objects_v2",
                            Bucket=self.location.bucket, Prefix=prefix, Delimiter="/")
        return sorted(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))

    def stage(self, name: str, source: Path, *, run_id: str | None = None) -> Manifest:
        """Claim the next number, upload ``source`` under it, publish its manifest (dead uploads of
        earlier workers are retired first)."""
        check_model_name(name)
        self._ensure_marker()
        versions.list_versions(self.client, self.location, name, clean=True)
        number = versions.claim_version(self.client, self.location, name, lease_seconds=self.lease_seconds,
                                        run_id=run_id)
        return versions.upload_version(self.client, self.location, name, number, Path(source), run_id=run_id)

    def promote(self, name: str, version: int, *, run_id: str | None = None) -> int | None:
        """One conditional write; returns the version production served before."""
        check_model_name(name)
        state = production.promote(self.client, self.location, name, version, run_id=run_id)
        return state.history[-1]["from_version"]

    def rollback(self, name: str, *, to_version: int | None = None, reason: str = "rolled back",
                 run_id: str | None = None) -> ObjectRollback:
        check_model_name(name)
        state, before, gone = production.rollback(self.client, self.location, name, to_version=to_version,
                                                  reason=reason, run_id=run_id)
        return ObjectRollback(name, before, state.serving, gone, changed=bool(gone))

    def manifest(self, name: str, version: int) -> Manifest | None:
        return versions.read_manifest(self.client, self.location, name, version)

    def status(self, name: str, *, history_limit: int = 10, clean: bool = True) -> ObjectStoreStatus:
        check_model_name(name)
        listing = versions.list_versions(self.client, self.location, name, clean=clean)
        state, _ = production.read_production(self.client, self.location, name)
        claimed = versions.claimed_numbers(self.client, self.location, name)
        exists = bool(claimed) or state.generation > 0
        return ObjectStoreStatus(
            name, self.root, exists, state.serving, state.served, listing.published, listing.in_progress,
            listing.cleaned, state.rejected, state.history[-history_limit:] if history_limit else [],
            (claimed or [0])[-1] + 1)
