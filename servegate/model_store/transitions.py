"""The store's changes: stage, promote, reject (and retire), rollback.

Every change checks its input before touching anything (a refused call leaves
the store byte-for-byte as it was), then takes the model's lock, runs recovery,
scans again and does its work, fsyncing as it goes (:func:`_changing` is that
common start). Each move of a version is announced before it is made
(:func:`_announced`: a write-ahead intent holding its history line) and its
line appended right after, so a kill between the move and its line loses
nothing (:mod:`~servegate.model_store.intents`). The public entry points are the
methods of :class:`~servegate.model_store.store.ModelStore`, which check names
and versions and call these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from servegate.model_store import counter as counter_mod
from servegate.model_store import fsutil, intents, reading, space
from servegate.model_store import history as history_mod
from servegate.model_store.errors import (
    NotASavedModel,
    NothingToRollBackTo,
    NotNewerThanProduction,
    StoreError,
    UnknownModel,
    UnknownVersion,
)
from servegate.model_store.layout import (
    AREAS,
    PRODUCTION,
    REASON_TMP_PREFIX,
    REJECTED,
    STAGING,
    new_token,
    reason_file_name,
    tmp_name,
)
from servegate.model_store.locking import InflightMarker, now_iso
from servegate.model_store.moves import move_version, rename_or_conflict, version_conflict
from servegate.model_store.reading import Scan
from servegate.model_store.recovery import recover_locked
from servegate.model_store.results import RollbackResult, fmt_versions
from servegate.model_store.savedmodel import check_savedmodel

if TYPE_CHECKING:
    from servegate.model_store.store import ModelStore

ROLLED_BACK = "rolled back"


# --------------------------------------------------------------------------- common


def require_model(store: ModelStore, name: str) -> None:
    space.check_root_is_dir(store.root)
    if not store.exists(name):
        known = store.models()
        raise UnknownModel(f"the store {store.root} holds no model named {name!r}"
                           + (f"; models there: {', '.join(known[:20])}" if known else "; it is empty"))


@contextlib.contextmanager
def _changing(store: ModelStore, name: str, operation: str, run_id: str | None) -> Iterator[tuple[str, Scan]]:
    """Lock, recover, scan: yields (when the lock was taken, the areas now). OS errors become store errors."""
    space.ensure_root_writable(store.root)
    with space.os_errors(operation, name), store.lock(name, operation=operation, run_id=run_id) as holder:
        started = holder.get("since") or now_iso()
        recover_locked(store.layout, name)
        yield started, reading.scan(store.layout, name)


@contextlib.contextmanager
def _announced(store: ModelStore, name: str, version: int, from_area: str | None, to_area: str, src: Path,
               **fields) -> Iterator[dict]:
    """The block moves ``src`` (``version``); its history line is planned before and appended after.

    Yields a dict for details of the move known only afterwards (how it moved).
    """
    line = history_mod.planned_transition(name, version, from_area, to_area, **fields)
    with intents.announced(store.layout, name, line, src) as extra:
        yield extra


def _check_complete(store: ModelStore, path: Path, what: str) -> None:
    """``path`` is a complete, servable SavedModel; else :class:`NotASavedModel` naming ``what``."""
    try:
        check_savedmodel(path, required_signature=store.required_signature, tags=store.serving_tags)
    except NotASavedModel as exc:
        raise NotASavedModel(f"{what}: {exc}") from None


def to_rejected(store: ModelStore, name: str, version: int, src: Path, from_area: str, reason: str, *,
                operation: str, run_id: str | None, started: str | None, detail: dict | None = None) -> Path:
    """Write the reason file, then move ``src`` to ``rejected/<name>/<version>`` and record it."""
    base = store.base_path(REJECTED, name)
    space.ensure_dir(base)
    dst = base / str(version)
    if os.path.lexists(dst):
        raise version_conflict(dst, name, version, stays_in=src.parent)
    reason_doc = {"model": name, "version": version, "reason": reason, "from_area": from_area,
                  "operation": operation, "time": now_iso(), "run_id": run_id}
    with _announced(store, name, version, from_area, REJECTED, src, operation=operation, reason=reason,
                    run_id=run_id, started=started, detail=detail) as extra:
        fsutil.write_atomic(base / reason_file_name(version),
                            (json.dumps(reason_doc, indent=2) + "\n").encode(), tmp_prefix=REASON_TMP_PREFIX)
        fsutil.checkpoint(f"{operation}:reason-written")
        extra["moved_by"] = move_version(name, src, dst, kind=operation, version=version)
    return dst


# --------------------------------------------------------------------------- stage


@dataclass
class _Slot:
    """A staged version in the making: its number, its temp dir, the marker that protects that dir."""

    version: int = 0
    tmp: Path | None = None
    marker: InflightMarker | None = None


@contextlib.contextmanager
def _staging_slot(store: ModelStore, name: str, staging: Path, run_id: str | None) -> Iterator[_Slot]:
    """Under the lock: the next number, its in-flight marker and temp dir. Whatever is left is removed at the end."""
    slot = _Slot()
    layout = store.layout
    try:
        with store.lock(name, operation="stage", run_id=run_id):
            recover_locked(layout, name)
            slot.version = reading.next_version(layout, name)
            counter_mod.write_counter(layout.counter_file(name), slot.version)
            fsutil.checkpoint("stage:counter-written")
            token = new_token()
            slot.marker = InflightMarker(layout.inflight_marker(name, token)).create()
            slot.tmp = staging / tmp_name("stage", slot.version, token)
            os.mkdir(slot.tmp)
            fsutil.fsync_dir(staging)
            fsutil.checkpoint("stage:tmp-created")
        yield slot
    finally:
        if slot.tmp is not None:
            with contextlib.suppress(OSError):
                fsutil.remove_tree(slot.tmp)
        if slot.marker is not None:
            slot.marker.release()


def _publish(store: ModelStore, name: str, slot: _Slot, src: Path, started: str, run_id: str | None,
             detail: dict | None = None) -> None:
    """Under the lock: the finished copy appears as ``staging/<name>/<v>`` by one rename, and is recorded."""
    staging = slot.tmp.parent
    with store.lock(name, operation="stage", run_id=run_id):
        final = staging / str(slot.version)
        with _announced(store, name, slot.version, None, STAGING, slot.tmp, operation="stage", reason="staged",
                        run_id=run_id, started=started, detail={**(detail or {}), "source": str(src.absolute())}):
            rename_or_conflict(slot.tmp, final, version_conflict(final))
            slot.tmp = None
            fsutil.fsync_dir(staging)
            fsutil.checkpoint("stage:renamed")
        slot.marker.release()
        slot.marker = None


def stage(store: ModelStore, name: str, src: Path, run_id: str | None, detail: dict | None = None) -> int:
    """See :meth:`ModelStore.stage`. The copy runs outside the lock, protected by the in-flight marker."""
    store.check_source(src)
    _, needed = fsutil.tree_size(src)
    space.ensure_root_writable(store.root)
    staging = store.base_path(STAGING, name)
    space.ensure_space(staging, needed, f"the SavedModel {src}")
    started = now_iso()
    with space.os_errors("stage", name):
        for directory in (store.layout.meta_dir(name), store.layout.inflight_dir(name), staging):
            space.ensure_dir(directory)
        with _staging_slot(store, name, staging, run_id) as slot:
            fsutil.copy_tree(src, slot.tmp)
            _check_complete(store, slot.tmp, f"the copy of {src} changed or broke while it was staged")
            fsutil.checkpoint("stage:copied")
            _publish(store, name, slot, src, started, run_id, detail)
    return slot.version


# --------------------------------------------------------------------------- promote


def _check_promotable(store: ModelStore, name: str, version: int, scanned: Scan) -> None:
    if version not in scanned[STAGING]:
        if version in scanned[REJECTED]:
            reason = reading.reasons(store.layout, name).get(version, "no reason recorded")
            raise UnknownVersion(f"version {version} of model {name!r} was rejected ({reason}); only staged "
                                 f"versions can be promoted (staged: {fmt_versions(scanned[STAGING])})")
        raise UnknownVersion(f"version {version} of model {name!r} is not staged; staged versions: "
                             f"{fmt_versions(scanned[STAGING])} (in {store.base_path(STAGING, name)})")
    if scanned[PRODUCTION] and version < max(scanned[PRODUCTION]):
        serving = max(scanned[PRODUCTION])
        raise NotNewerThanProduction(
            f"version {version} of model {name!r} is older than version {serving} that production serves; "
            f"TF Serving's latest policy would keep serving {serving}. Reject {version}, or roll back "
            f"production instead")


def _apply_retention(store: ModelStore, name: str, run_id: str | None, started: str | None) -> list[int]:
    """Production keeps the newest ``retention`` versions; older ones move to ``rejected/`` ("retired")."""
    production = sorted(reading.scan_area(store.layout, PRODUCTION, name).items())
    retired = []
    for version, path in production[: max(0, len(production) - store.retention)]:
        to_rejected(store, name, version, path, PRODUCTION,
                    f"retired (retention keeps the newest {store.retention} production versions)",
                    operation="retire", run_id=run_id, started=started)
        retired.append(version)
    return retired


def promote(store: ModelStore, name: str, version: int, run_id: str | None) -> Path:
    """See :meth:`ModelStore.promote`."""
    require_model(store, name)
    scanned = reading.scan(store.layout, name)
    if version not in scanned[PRODUCTION]:
        _check_promotable(store, name, version, scanned)  # refuse before touching anything
    with _changing(store, name, "promote", run_id) as (started, scanned):
        if version in scanned[PRODUCTION]:
            return scanned[PRODUCTION][version]
        _check_promotable(store, name, version, scanned)
        src = scanned[STAGING][version]
        _check_complete(store, src, f"staged version {version} of model {name!r} is not a complete SavedModel")
        base = store.base_path(PRODUCTION, name)
        space.ensure_dir(base)
        dst = base / str(version)
        previous = max(scanned[PRODUCTION]) if scanned[PRODUCTION] else None
        with _announced(store, name, version, STAGING, PRODUCTION, src, operation="promote", reason="promoted",
                        run_id=run_id, started=started, detail={"previous": previous}) as extra:
            extra["moved_by"] = move_version(name, src, dst, kind="promote", version=version)
        _apply_retention(store, name, run_id, started)
        return dst


# --------------------------------------------------------------------------- reject


def _unknown_version(name: str, version: int, scanned: Scan, operation: str) -> UnknownVersion:
    where = "; ".join(f"{area}: {fmt_versions(scanned[area])}" for area in AREAS)
    return UnknownVersion(f"cannot {operation} version {version} of model {name!r}: the store has no such "
                          f"version ({where})")


def reject(store: ModelStore, name: str, version: int, reason: str, run_id: str | None) -> Path:
    """See :meth:`ModelStore.reject`."""
    if not isinstance(reason, str) or not reason.strip():
        raise StoreError(f"reject of version {version} of model {name!r} needs a reason (a non-empty string); "
                         f"got {reason!r}")
    require_model(store, name)
    scanned = reading.scan(store.layout, name)
    if not any(version in scanned[area] for area in AREAS):
        raise _unknown_version(name, version, scanned, "reject")
    with _changing(store, name, "reject", run_id) as (started, scanned):
        for from_area in (PRODUCTION, STAGING):
            if version in scanned[from_area]:
                return to_rejected(store, name, version, scanned[from_area][version], from_area, reason.strip(),
                                   operation="reject", run_id=run_id, started=started)
        if version in scanned[REJECTED]:
            return scanned[REJECTED][version]
        raise _unknown_version(name, version, scanned, "reject")


# --------------------------------------------------------------------------- rollback


def _rollback_target(name: str, target: int, current: int, production: list[int], scanned: Scan) -> None:
    """Refuse a ``to_version`` that is newer than production's or not in production."""
    where = next((area for area in AREAS if target in scanned[area]), None)
    hint = f" (it is in {where})" if where else " (the store has no such version)"
    if target > current:
        raise UnknownVersion(f"version {target} of model {name!r}{hint} is newer than version {current} "
                             "that production serves; rollback only goes back (a newer version reaches "
                             "production through `servegate deploy`)")
    if target not in scanned[PRODUCTION]:
        raise UnknownVersion(f"version {target} of model {name!r} is not in production{hint}; versions "
                             f"production can roll back to: {fmt_versions(production[:-1])}")


def _plan_rollback(store: ModelStore, name: str, to_version: int | None, scanned: Scan
                   ) -> tuple[int, int, list[int]]:
    """(version served now, version to serve, versions to move to ``rejected/`` newest first); or refuse."""
    production = sorted(scanned[PRODUCTION])
    base = store.base_path(PRODUCTION, name)
    if not production:
        raise NothingToRollBackTo(f"production of model {name!r} is empty ({base}); nothing to roll back to")
    current = production[-1]
    if to_version is None:
        if len(production) == 1:
            raise NothingToRollBackTo(
                f"production of model {name!r} holds only version {current} ({base}); there is no older "
                f"version to roll back to (rejected: {fmt_versions(scanned[REJECTED])})")
        target = production[-2]
    else:
        target = to_version
        _rollback_target(name, target, current, production, scanned)
    return current, target, [v for v in reversed(production) if v > target]


def rolled_back_reason(reason: str | None) -> str:
    """The reason the rolled-back versions keep: "rolled back", with why when the caller said."""
    reason = (reason or "").strip()
    if not reason:
        return ROLLED_BACK
    return reason if reason.startswith(ROLLED_BACK) else f"{ROLLED_BACK}: {reason}"


def rollback(store: ModelStore, name: str, to_version: int | None, run_id: str | None,
             reason: str | None = None) -> RollbackResult:
    """See :meth:`ModelStore.rollback`."""
    require_model(store, name)
    _plan_rollback(store, name, to_version, reading.scan(store.layout, name))  # refuse before touching anything
    with _changing(store, name, "rollback", run_id) as (started, scanned):
        current, target, to_move = _plan_rollback(store, name, to_version, scanned)
        for version in to_move:
            to_rejected(store, name, version, scanned[PRODUCTION][version], PRODUCTION, rolled_back_reason(reason),
                        operation="rollback", run_id=run_id, started=started,
                        detail={"from_version": current, "to_version": target})
        return RollbackResult(model=name, from_version=current, to_version=target, rejected=to_move,
                              production_path=str(store.base_path(PRODUCTION, name)), changed=bool(to_move))
