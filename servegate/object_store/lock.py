"""A model's lock in the bucket: a create-only ``lock.json`` with a lease.

Used where a change must stay in step with something outside the store (MLflow's champion follows
production under it). A holder killed keeps it until its lease expires; the next taker then replaces
the stale lock with a compare-and-swap on its ETag, so two takers never both win.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from servegate.model_store.errors import LockTimeout
from servegate.object_store.connect import is_missing, is_precondition_failed, translate
from servegate.object_store.location import S3Location
from servegate.object_store.versions import model_key


def _try(client: Any, location: S3Location, key: str, body: bytes, condition: dict) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.put_object(Bucket=location.bucket, Key=key, Body=body, **condition)
        return True
    except ClientError as exc:
        if is_precondition_failed(exc):
            return False
        raise translate(exc, location, client, f"taking {key}") from exc
    except BotoCoreError as exc:
        raise translate(exc, location, client, f"taking {key}") from exc


def _stale_etag(client: Any, location: S3Location, key: str) -> tuple[str | None, dict | None]:
    """The ETag of an expired lock (None when it is live or gone) and what its holder wrote."""
    try:
        response = client.get_object(Bucket=location.bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - gone meanwhile is the one expected case
        if is_missing(exc):
            return None, None
        raise translate(exc, location, client, f"reading {key}") from exc
    holder = json.loads(response["Body"].read())
    expired = time.time() > holder.get("since", 0) + holder.get("lease_s", 0)
    return (response["ETag"] if expired else None), holder


@contextlib.contextmanager
def hold(client: Any, location: S3Location, name: str, *, operation: str, timeout: float = 30.0,
         lease_s: float = 300.0) -> Iterator[None]:
    key = model_key(location, name, "lock.json")
    deadline = time.monotonic() + timeout
    holder: dict | None = None
    while True:
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "operation": operation,
                           "since": time.time(), "lease_s": lease_s}).encode()
        if _try(client, location, key, body, {"IfNoneMatch": "*"}):
            break
        stale, holder = _stale_etag(client, location, key)
        if stale is not None and _try(client, location, key, body, {"IfMatch": stale}):
            break
        if time.monotonic() > deadline:
            raise LockTimeout(f"{location.uri}: the lock of {name!r} is held by {holder}; waited {timeout:.0f} s",
                              holder=holder, waited=timeout, subject=location.source)
        time.sleep(0.1)
    try:
        yield
    finally:
        try:
            client.delete_object(Bucket=location.bucket, Key=key)
        except Exception:  # noqa: BLE001 - an unreleased lock expires with its lease
            pass
