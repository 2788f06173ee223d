"""A model's production state: one object (``models/NAME/production.json``) changed only by compare-and-swap.

A change reads the object and its ETag, decides on what it read, and writes with ``If-Match: <etag>``
(``If-None-Match: *`` for the first). A 412 means another writer won: read again, decide again (the
promotion may no longer be newer than production), write again. So a promotion and a rollback are each
one conditional write, two of them never interleave, and none is lost.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from servegate.model_store.errors import NotNewerThanProduction, NothingToRollBackTo, UnknownVersion
from servegate.model_store.fsutil import checkpoint
from servegate.object_store.connect import is_missing, is_precondition_failed, translate
from servegate.object_store.errors import ConcurrentChange
from servegate.object_store.location import S3Location
from servegate.object_store.records import Production
from servegate.object_store.versions import model_key, read_manifest

CAS_ATTEMPTS = 50


def production_key(location: S3Location, name: str) -> str:
    return model_key(location, name, "production.json")


def read_production(client: Any, location: S3Location, name: str) -> tuple[Production, str | None]:
    """The state and its ETag; an empty state and None when the model has never been promoted."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = production_key(location, name)
    try:
        response = client.get_object(Bucket=location.bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        if is_missing(exc):
            return Production(name), None
        raise translate(exc, location, client, f"reading {key}") from exc
    return Production.from_json(response["Body"].read()), response["ETag"]


def change(client: Any, location: S3Location, name: str, decide: Callable[[Production], Production | None]) -> Production:
    """Apply ``decide`` (which reads the current state and returns the new one, None for "no change",
    or raises) with compare-and-swap, re-reading and re-deciding on every 412."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = production_key(location, name)
    for attempt in range(CAS_ATTEMPTS):
        current, etag = read_production(client, location, name)
        new = decide(current)
        if new is None:
            return current
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            client.put_object(Bucket=location.bucket, Key=key, Body=new.to_json(), ContentType="application/json",
                              **condition)
            return new
        except ClientError as exc:
            if not is_precondition_failed(exc):
                raise translate(exc, location, client, f"writing {key}") from exc
        except BotoCoreError as exc:
            raise translate(exc, location, client, f"writing {key}") from exc
        time.sleep(random.uniform(0, min(1.0, 0.02 * 2 ** attempt)))  # spread the losers out
    raise ConcurrentChange(f"{location.uri}: production of {name!r} changed under every one of {CAS_ATTEMPTS} "
                           "tries; try again", subject=location.source)


def _entry(operation: str, version: int, previous: int | None, run_id: str | None, reason: str | None) -> dict:
    return {"time": datetime.now(timezone.utc).isoformat(), "operation": operation, "version": version,
            "from_version": previous, "run_id": run_id, "reason": reason}


def retirement_reason(retention: int) -> str:
    return f"retired (retention keeps the newest {retention} production versions)"


def promote(client: Any, location: S3Location, name: str, version: int, *, run_id: str | None = None,
            retention: int | None = None) -> Production:
    """Make ``version`` (published) what production serves; refused when production already serves a
    newer or equal one, or when it was rejected (judged again on every retry). With ``retention``, the
    served stack keeps the newest ``retention`` versions and the older ones are retired into the rejected
    set in the same conditional write (as the local store moves them to ``rejected/``)."""
    if read_manifest(client, location, name, version) is None:
        rejected = read_production(client, location, name)[0].rejected
        if str(version) in rejected:  # its files deleted since it left production
            raise UnknownVersion(f"version {version} of model {name!r} was rejected ({rejected[str(version)]}); "
                                 "only staged versions can be promoted", subject="--name")
        raise UnknownVersion(f"{location.uri}: version {version} of {name!r} has no complete manifest; only a "
                             "published version can be promoted", subject=location.source)
    checkpoint("s3-promote:before-write")

    def decide(state: Production) -> Production:
        serving = state.serving
        if serving is not None and version <= serving:
            raise NotNewerThanProduction(f"version {version} of {name!r} is not newer than version {serving}, "
                                         "which production serves", subject="--name")
        if str(version) in state.rejected:
            # a rejected version's files may already be deleted (prune.py): it never comes back
            raise UnknownVersion(f"version {version} of model {name!r} was rejected ({state.rejected[str(version)]}); "
                                 "only staged versions can be promoted", subject="--name")
        state.served = [v for v in state.served if v != version] + [version]
        state.record(_entry("promote", version, serving, run_id, None))
        for old in state.served[: max(0, len(state.served) - retention)] if retention else []:
            state.rejected[str(old)] = retirement_reason(retention)
            state.record(_entry("retire", old, version, run_id, retirement_reason(retention)))
        state.served = state.served[-retention:] if retention else state.served
        return state

    return change(client, location, name, decide)


def rollback(client: Any, location: S3Location, name: str, *, to_version: int | None = None,
             reason: str = "rolled back", run_id: str | None = None) -> tuple[Production, int, list[int]]:
    """Pop served versions until ``to_version`` (default: the one below the top) is served.
    Returns the new state, the version served before, and the versions rolled back (newest first)."""
    outcome: dict[str, Any] = {}

    def decide(state: Production) -> Production | None:
        if len(state.served) < 2 or (to_version is not None and to_version not in state.served[:-1]):
            if to_version is not None and to_version == state.serving:
                outcome.update(before=to_version, gone=[])
                return None
            below = ", ".join(map(str, state.served[:-1])) or "none"
            raise NothingToRollBackTo(f"production of {name!r} serves {state.serving}; versions it can go back "
                                      f"to: {below}", subject="--to" if to_version is not None else "--name")
        target = to_version if to_version is not None else state.served[-2]
        before = state.serving
        gone = list(reversed(state.served[state.served.index(target) + 1:]))
        state.served = state.served[:state.served.index(target) + 1]
        for version in gone:
            state.rejected[str(version)] = reason
        state.record(_entry("rollback", target, before, run_id, reason))
        outcome.update(before=before, gone=gone)
        return state

    state = change(client, location, name, decide)
    return state, outcome["before"], outcome["gone"]


def reject(client: Any, location: S3Location, name: str, version: int, reason: str, *,
           run_id: str | None = None) -> Production:
    """``version`` out of production (when it is there) and into the rejected set with ``reason``."""

    def decide(state: Production) -> Production | None:
        if str(version) in state.rejected and version not in state.served:
            return None
        before = state.serving
        state.served = [v for v in state.served if v != version]
        state.rejected[str(version)] = reason
        state.record(_entry("reject", version, before, run_id, reason))
        return state

    return change(client, location, name, decide)
