"""``servegate sync``: keep a local base path, the one a TF Serving replica polls, in step with a model's
production state in the bucket.

One pass (:func:`converge`) per model: read production.json; place the version production serves
(downloaded into a temporary directory, verified against the manifest, fsynced, renamed in one step);
take out versions newer than it at once (a rollback: TF Serving's "latest" policy serves the highest
number present); take out older ones once the new one is AVAILABLE on ``--serving-url`` (at once when
no URL is known). A version leaves by one rename out of its number before its files are deleted, so a
poll never finds a half-deleted version. A killed pass leaves only ``.servegate-tmp-*`` directories,
which are not version numbers (TF Serving ignores them) and which the next pass removes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from servegate.object_store.errors import ObjectStoreError
from servegate.object_store.download import TMP_PREFIX, download_version, remove_leftovers
from servegate.object_store.location import S3Location
from servegate.object_store.production import read_production
from servegate.object_store.versions import read_manifest


@dataclass(frozen=True)
class SyncTarget:
    name: str
    base_path: Path


@dataclass
class ModelReport:
    """What one model looks like on this node after a pass (the heartbeat's per-model record)."""

    wanted: int | None = None
    present: list[int] = field(default_factory=list)
    available: list[int] | None = None   # None: no --serving-url to ask
    lag_s: float = 0.0                   # seconds since production changed, while this node is not there yet
    last_error: str | None = None


def present_versions(base_path: Path) -> list[int]:
    return sorted(int(p.name) for p in base_path.iterdir() if p.is_dir() and p.name.isdigit()) \
        if base_path.is_dir() else []


def available_versions(serving_url: str, name: str) -> list[int]:
    """The versions TF Serving (or the bundled server) reports AVAILABLE for ``name``."""
    import requests

    response = requests.get(f"{serving_url.rstrip('/')}/v1/models/{name}", timeout=5)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return sorted(int(s["version"]) for s in response.json().get("model_version_status", [])
                  if s.get("state") == "AVAILABLE")


def remove_version(base_path: Path, version: int) -> None:
    """Out of the base path whole: renamed to a temporary name first (one step), then deleted."""
    leaving = base_path / f"{TMP_PREFIX}gone-{version}-{uuid.uuid4().hex[:8]}"
    os.rename(base_path / str(version), leaving)
    shutil.rmtree(leaving)


def _changed_at(history: list[dict]) -> float | None:
    if not history:
        return None
    return datetime.fromisoformat(history[-1]["time"]).timestamp()


def _lag(wanted: int | None, done: bool, history: list[dict]) -> float:
    changed = _changed_at(history)
    return 0.0 if wanted is None or done or changed is None else round(max(0.0, time.time() - changed), 3)


def converge(client: Any, location: S3Location, target: SyncTarget, serving_url: str | None = None,
             report: ModelReport | None = None) -> ModelReport:
    """One pass for one model (see the module doc); errors are raised, the caller reports them.

    ``report`` is filled as the pass goes, so a caller that catches an error still has what was learnt
    before it: the version production serves, and the lag while the node is not there yet."""
    report = report if report is not None else ModelReport()
    remove_leftovers(target.base_path)
    state, _ = read_production(client, location, target.name)
    report.wanted = wanted = state.serving
    placed = wanted in present_versions(target.base_path)
    # Until the pass ends, a node with a server to ask is not known to serve anything.
    report.lag_s = _lag(wanted, serving_url is None and placed, state.history)
    if wanted is not None and not placed:
        manifest = read_manifest(client, location, target.name, wanted)
        if manifest is None:
            raise ObjectStoreError(f"{location.uri}: production of {target.name!r} names version {wanted}, which "
                                   "has no manifest; nothing was placed", subject=location.source)
        download_version(client, location, manifest, target.base_path / str(wanted))
    for version in present_versions(target.base_path):
        if wanted is not None and version > wanted:
            remove_version(target.base_path, version)  # rolled back: TF Serving would keep serving it
    available = available_versions(serving_url, target.name) if serving_url else None
    if wanted is not None and (available is None or wanted in available):
        for version in present_versions(target.base_path):
            if version < wanted:
                remove_version(target.base_path, version)
    report.present = present_versions(target.base_path)
    report.available = available_versions(serving_url, target.name) if serving_url else None
    report.lag_s = _lag(wanted, wanted in (report.available if serving_url else report.present), state.history)
    return report


def heartbeat_key(location: S3Location, node: str) -> str:
    return location.key("fleet", f"{node}.json")


def write_heartbeat(client: Any, location: S3Location, node: str, reports: dict[str, ModelReport]) -> None:
    body = {"node": node, "host": socket.gethostname(), "time": time.time(),
            "models": {name: asdict(report) for name, report in reports.items()}}
    client.put_object(Bucket=location.bucket, Key=heartbeat_key(location, node), Body=json.dumps(body).encode(),
                      ContentType="application/json")


def read_heartbeats(client: Any, location: S3Location) -> list[dict]:
    from servegate.object_store.versions import list_keys

    beats = []
    for key in list_keys(client, location, location.key("fleet") + "/"):
        try:
            beats.append(json.loads(client.get_object(Bucket=location.bucket, Key=key)["Body"].read()))
        except Exception:  # noqa: BLE001 - a heartbeat deleted or half-read is skipped, not fatal
            continue
    return beats
