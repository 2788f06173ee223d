"""``servegate status`` and ``rollback`` on a store root in a bucket (``--store s3://BUCKET/PREFIX``).

The location was parsed by :func:`servegate.settings.resolve_store_root`; opening the store runs every
up-front check (credentials, endpoint, bucket, access, nesting, conditional writes) before anything is
written, each a named error with exit 2.
"""

from __future__ import annotations

import json

import typer

from servegate.model_store import UnknownModel
from servegate.object_store import ObjectModelStore, ObjectStoreStatus, S3Location
from servegate.object_store.fleet import NodeView, fleet


def _versions(versions: list[int]) -> str:
    return ", ".join(map(str, versions)) if versions else "-"


def format_object_status(status: ObjectStoreStatus) -> str:
    lines = [f"model {status.model}  (store {status.root})",
             "production serves: " + (f"version {status.serving_version}" if status.serving_version is not None
                                      else "nothing (no version in production)"),
             f"  served (rollback goes down this list)  {_versions(status.served)}",
             f"  published (complete manifests)         {_versions(status.published)}",
             f"  uploading (lease held)                 {_versions(status.in_progress)}"]
    if status.cleaned:
        lines.append(f"  retired now (dead uploads)             {_versions(status.cleaned)}")
    if status.deleted:
        lines.append(f"  deleted now (left production)          {_versions(status.deleted)}")
    for version, why in sorted(status.kept.items(), key=lambda item: int(item[0])):
        lines.append(f"  left production, files kept {version}: {why}")
    for version, reason in sorted(status.rejected_reasons.items(), key=lambda item: int(item[0])):
        lines.append(f"  rejected {version}: {reason}")
    lines.append(f"next version: {status.next_version}")
    lines.append("recent history:" if status.history else "recent history: none")
    for record in status.history:
        extra = f"  run {record['run_id']}" if record.get("run_id") else ""
        reason = f"  {record['reason']}" if record.get("reason") else ""
        lines.append(f"  {record['time']}  {record['operation']:<8} v{record['version']:<5} "
                     f"(from {record['from_version'] or '-'}){reason}{extra}")
    return "\n".join(lines)


def object_status(location: S3Location, name: str, as_json: bool, history: int) -> int:
    store = ObjectModelStore.open(location)
    status = store.status(name, history_limit=history)
    if not status.exists:
        models = store.models()
        raise UnknownModel(f"the store {store.root} holds no model named {name!r}"
                           + (f"; models there: {', '.join(models[:20])}" if models else "; it is empty"))
    nodes = fleet(store.client, location, name)
    if as_json:
        typer.echo(json.dumps({**status.to_dict(), "fleet": [n.to_dict() for n in nodes]}, sort_keys=True))
    else:
        typer.echo(format_object_status(status) + "\n" + format_fleet(nodes))
    return 0


def format_fleet(nodes: list[NodeView]) -> str:
    if not nodes:
        return "fleet: no node has reported (no servegate sync heartbeat for this model)"
    lines = ["fleet:  node                 serves   wants    lag      last seen"]
    for n in nodes:
        lines.append(f"  {n.node:<24} {str(n.serving or '-'):<8} {str(n.wanted or '-'):<8} {n.lag_s:<8.1f} "
                     f"{n.last_seen_s:.0f} s ago" + ("" if n.live else " (not live)")
                     + (f"  error: {n.last_error}" if n.last_error else ""))
    return "\n".join(lines)
