""":class:`ObjectModelStore`: the model store on S3-compatible object storage.

Same promises as the local store, built on conditional writes instead of rename and flock: a version
is visible only once its manifest is complete, numbers are never handed out twice, each model's
production state changes by compare-and-swap, and a worker killed at any moment leaves nothing a
reader sees (its upload is retired by the next stage or status once its lease expires).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servegate.model_store.layout import check_model_name
from servegate.model_store.store import DEFAULT_RETENTION  # the local store's: one default for both
from servegate.errors import StoreError
from servegate.object_store.errors import ObjectStoreError
from servegate.object_store import connect, production, prune, versions
from servegate.object_store.location import S3Location
from servegate.object_store.records import Manifest

log = logging.getLogger(__name__)


def check_retention(retention: object) -> int:
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
        raise StoreError(f"retention {retention!r} is not allowed; expected an integer >= 1 (the number of "
                         "production versions kept as rollback targets)", subject="retention")
    return retention


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
    deleted: list[int] = field(default_factory=list)    # versions out of production whose files this call deleted
    kept: dict[str, str] = field(default_factory=dict)  # out of production, files kept: a node reports them
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
    """Open with :meth:`open` (it runs every up-front check); ``client`` is a boto3 S3 client.

    ``retention``: production versions kept as rollback targets (>= 1), as the local store's; each
    promotion retires older ones, and every change (and ``status``) deletes the files of versions that
    left production once no node reports them (:mod:`~servegate.object_store.prune`)."""

    def __init__(self, location: S3Location, client: Any, *, exists: bool,
                 lease_seconds: float = versions.DEFAULT_LEASE_SECONDS, retention: int = DEFAULT_RETENTION):
        self.location = location
        self.client = client
        self.exists = exists
        self.lease_seconds = lease_seconds
        self.retention = check_retention(retention)

    @classmethod
    def open(cls, location: S3Location, *, client: Any = None, lease_seconds: float | None = None,
             retention: int = DEFAULT_RETENTION) -> ObjectModelStore:
        """``lease_seconds``: the lease of the numbers this store claims (default: ``SERVEGATE_UPLOAD_LEASE_S``,
        else an hour), checked before anything is opened, as ``retention`` is."""
        lease_seconds = versions.lease_from_environment() if lease_seconds is None else lease_seconds
        check_retention(retention)
        client = client if client is not None else connect.make_client()
        exists = connect.preflight(client, location)
        return cls(location, client, exists=exists, lease_seconds=lease_seconds, retention=retention)

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
        state = production.promote(self.client, self.location, name, version, run_id=run_id,
                                   retention=self.retention)
        self._prune_after_change(name)
        return next(e["from_version"] for e in reversed(state.history) if e["operation"] == "promote")

    def reject(self, name: str, version: int, reason: str, *, run_id: str | None = None) -> None:
        check_model_name(name)
        production.reject(self.client, self.location, name, version, reason, run_id=run_id)
        self._prune_after_change(name)

    def rollback(self, name: str, *, to_version: int | None = None, reason: str = "rolled back",
                 run_id: str | None = None) -> ObjectRollback:
        check_model_name(name)
        state, before, gone = production.rollback(self.client, self.location, name, to_version=to_version,
                                                  reason=reason, run_id=run_id)
        self._prune_after_change(name)
        return ObjectRollback(name, before, state.serving, gone, changed=bool(gone))

    def prune(self, name: str) -> prune.PruneReport:
        """Delete the files of versions that left production and that no node reports (see prune.py)."""
        return prune.prune(self.client, self.location, check_model_name(name))

    def _prune_after_change(self, name: str) -> None:
        """Production has changed and that stands: a deletion that fails is logged and retried by the next
        change or ``servegate status``, never reported as a failed promotion or rollback."""
        try:
            self.prune(name)
        except ObjectStoreError as exc:
            log.warning("%s: old versions of %r not deleted yet: %s", self.root, name, exc)

    def manifest(self, name: str, version: int) -> Manifest | None:
        return versions.read_manifest(self.client, self.location, name, version)

    def status(self, name: str, *, history_limit: int = 10, clean: bool = True) -> ObjectStoreStatus:
        check_model_name(name)
        pruned = self.prune(name) if clean else prune.PruneReport()
        listing = versions.list_versions(self.client, self.location, name, clean=clean)
        state, _ = production.read_production(self.client, self.location, name)
        claimed = versions.claimed_numbers(self.client, self.location, name)
        exists = bool(claimed) or state.generation > 0
        return ObjectStoreStatus(
            name, self.root, exists, state.serving, state.served, listing.published, listing.in_progress,
            listing.cleaned, pruned.deleted, pruned.kept, state.rejected, state.history[-history_limit:] if history_limit else [],
            (claimed or [0])[-1] + 1)
