"""``ModelStore``: the crash-safe, versioned store of SavedModels.

Areas (see :mod:`servegate.model_store.layout`): ``staging``, ``production``
(the base path TensorFlow Serving watches) and ``rejected``. A version moves
between areas by one ``rename`` on one filesystem; between filesystems by a
copy into a dot-named temp dir on the destination, fsync, one rename into
place, and then the removal of the source (first hidden by a rename to a dot
name). Every change:

1. checks its input before touching anything (a refused call leaves the store
   byte-for-byte as it was),
2. takes the model's lock (``flock``; a dead holder's lock is free),
3. runs recovery (leftover temp dirs of dead processes, half-finished
   cross-filesystem moves, history lines lost to a crash),
4. does its work, fsyncing files and directories, and appends its history;
   each move of a version is announced first by a write-ahead intent holding
   its history line (``intents``), so a crash between a move and its line
   loses neither the line nor who made the move.

What ``recover`` does with a version found in two areas (only a crash in the
middle of a cross-filesystem move can cause that): it never changes
production. A copy in production wins (the promotion had completed: the staged
copy is removed); a copy in production with one in ``rejected`` means a
reject/rollback/retire had not completed (the copy in ``rejected`` is removed);
one in staging and one in ``rejected`` keeps staging. Copies that differ are
left alone and reported.

Retention: after each promotion, production keeps the newest ``retention``
versions as rollback targets; older ones move to ``rejected/`` with the reason
"retired" (nothing is deleted; their numbers are never handed out again).

Where the parts live: this module is the public API; ``transitions`` (stage,
promote, reject, rollback), ``recovery`` (the repairs, one function each),
``intents`` (write-ahead intents of moves), ``moves`` (rename or cross-filesystem copy), ``space`` (free space,
writability, OS errors), ``reading`` (scans), ``results`` (returned records),
``history``, ``locking``, ``layout``, ``fsutil``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from servegate.model_store import fsutil, reading, recovery, space, transitions
from servegate.model_store import history as history_mod
from servegate.model_store.errors import InvalidModelName, NotASavedModel, StoreError
from servegate.model_store.filesystems import check_store_location
from servegate.model_store.history import HistoryRecord
from servegate.model_store.layout import AREAS, PRODUCTION, REJECTED, Layout, check_model_name, check_version
from servegate.model_store.locking import ModelLock, lock_is_held, read_holder
from servegate.model_store.results import RecoveryReport, RollbackResult, StoreStatus
from servegate.model_store.savedmodel import DEFAULT_SIGNATURE, SERVING_TAGS, SavedModelInfo, check_savedmodel

__all__ = ["DEFAULT_LOCK_TIMEOUT", "DEFAULT_RETENTION", "ModelStore", "RecoveryReport", "RollbackResult",
           "StoreStatus"]

DEFAULT_RETENTION = 3
DEFAULT_LOCK_TIMEOUT = 30.0
_DEFAULT = object()


class ModelStore:
    """A versioned store of SavedModels for TensorFlow Serving.

    ``root``: the store root (default: :func:`servegate.settings.default_store_root`).
    ``retention``: production versions kept as rollback targets (>= 1).
    ``lock_timeout``: seconds a change waits for the model's lock (None: forever).
    ``areas``: optional per-area directories, e.g. ``{"production": "/mnt/models"}``
    (a production on another filesystem is promoted into by copy + rename).
    ``required_signature``/``serving_tags``: what makes a SavedModel servable.

    Reading (:mod:`~servegate.model_store.reading`) takes no lock and writes
    nothing; changes are in :mod:`~servegate.model_store.transitions`, repairs in
    :mod:`~servegate.model_store.recovery`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        retention: int = DEFAULT_RETENTION,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
        *,
        areas: dict[str, str | os.PathLike[str]] | None = None,
        required_signature: str | None = DEFAULT_SIGNATURE,
        serving_tags: tuple[str, ...] | None = SERVING_TAGS,
    ):
        if root is None:
            # Up a floor, lazily: settings owns where the default store is (SERVEGATE_HOME); settings
            # asks model_store only to refuse unsafe locations, so neither loads the other at import.
            from servegate.settings import default_store_root

            root = default_store_root()
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
            raise StoreError(f"retention {retention!r} is not allowed; expected an integer >= 1 "
                             "(the number of production versions kept as rollback targets)")
        if lock_timeout is not None and (not isinstance(lock_timeout, (int, float)) or lock_timeout < 0):
            raise StoreError(f"lock_timeout {lock_timeout!r} is not allowed; expected seconds >= 0 or None")
        check_store_location(root, areas)  # object stores have no atomic rename: refused before any write
        self.layout = Layout(root, areas)
        self.retention = retention
        self.lock_timeout = None if lock_timeout is None else float(lock_timeout)
        self.required_signature = required_signature
        self.serving_tags = serving_tags

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r}, retention={self.retention}, lock_timeout={self.lock_timeout})"

    @property
    def root(self) -> Path:
        return self.layout.root

    # ------------------------------------------------------------------ paths

    def base_path(self, area: str, name: str) -> Path:
        """``<area>/<name>``; ``base_path("production", name)`` is TF Serving's ``--model_base_path``."""
        return self.layout.base_path(area, name)

    def version_path(self, area: str, name: str, version: int) -> Path:
        """Where ``version`` is (or would be) in ``area``. An existing directory wins (e.g. ``00000123``)."""
        version = check_version(version)
        existing = reading.scan_area(self.layout, area, name).get(version)
        return existing if existing is not None else self.base_path(area, name) / str(version)

    # ------------------------------------------------------------------ reading (no lock, no writes)

    def versions(self, name: str, area: str) -> list[int]:
        """The versions in ``area``, ascending."""
        return sorted(reading.scan_area(self.layout, area, check_model_name(name)))

    def serving_version(self, name: str) -> int | None:
        """The version TF Serving serves under its default ``latest`` policy: the highest in production."""
        production = self.versions(name, PRODUCTION)
        return production[-1] if production else None

    def history(self, name: str, limit: int | None = None) -> list[HistoryRecord]:
        """The model's transitions, oldest first (the newest ``limit`` when given)."""
        return history_mod.read(self.layout.history_file(check_model_name(name)), limit)

    def exists(self, name: str) -> bool:
        """Whether the store holds anything for ``name`` (a version, or its metadata)."""
        name = check_model_name(name)
        if self.layout.meta_dir(name).is_dir():
            return True
        return any(self.base_path(area, name).is_dir() for area in AREAS)

    def models(self) -> list[str]:
        """Every model name the store knows, sorted."""
        names: set[str] = set()
        for entry in reading.models(self.layout):
            with contextlib.suppress(InvalidModelName):
                names.add(check_model_name(entry))
        return sorted(names)

    def status(self, name: str, history_limit: int = 10) -> StoreStatus:
        """Versions per area, the version production serves, recent history. Reads only."""
        name = check_model_name(name)
        space.check_root_is_dir(self.root)
        scanned = reading.scan(self.layout, name)
        versions = {area: sorted(scanned[area]) for area in AREAS}
        holder = None
        if lock_is_held(self.layout.lock_file(name)):
            holder = read_holder(self.layout.holder_file(name)) or {"pid": None, "since": None}
        return StoreStatus(
            model=name,
            root=str(self.root),
            exists=self.exists(name),
            base_paths={area: str(self.base_path(area, name)) for area in AREAS},
            versions=versions,
            serving_version=versions[PRODUCTION][-1] if versions[PRODUCTION] else None,
            rejected_reasons={v: r for v, r in sorted(reading.reasons(self.layout, name).items())
                              if v in scanned[REJECTED]},
            next_version=reading.next_version(self.layout, name, scanned),
            history=self.history(name, history_limit),
            lock_holder=holder,
            leftovers=reading.leftovers(self.layout, name),
        )

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def lock(self, name: str, *, operation: str = "external", run_id: str | None = None,
             timeout: float | None | object = _DEFAULT, share_with_threads: bool = False) -> Iterator[dict]:
        """Hold the model's lock for a ``with`` block (reentrant within a thread).

        Other code (the deploy flow) may hold it across several steps; store
        calls made inside the block by the same thread do not wait. With
        ``share_with_threads=True`` calls from other threads of this process
        (e.g. Prefect tasks in a thread pool) do not wait either, while the
        block lasts. Other processes, and forked children, always wait.
        ``timeout`` defaults to the store's ``lock_timeout`` (None: forever).
        Yields the holder record (pid, ticks, host, since, operation, run_id).
        """
        name = check_model_name(name)
        space.ensure_root_writable(self.root)
        space.ensure_dir(self.layout.meta_dir(name))
        model_lock = ModelLock(name, self.layout.lock_file(name), self.layout.holder_file(name))
        with model_lock.hold(timeout=self.lock_timeout if timeout is _DEFAULT else timeout,
                             operation=operation, run_id=run_id, share_with_threads=share_with_threads) as holder:
            yield holder

    # ------------------------------------------------------------------ recovery

    def recover(self, name: str) -> RecoveryReport:
        """Repair what a crashed change left behind (also runs at the start of every change).

        Removes temp dirs of dead processes, finishes or undoes half-done
        cross-filesystem moves (never changing production), drops orphan reason
        files and dead in-flight markers, appends the planned history line of a
        move whose writer died before writing it (naming that writer), and a
        ``recover`` line for a change made by hand (:mod:`~servegate.model_store.recovery`).
        A model the store does not know is left alone.
        """
        name = check_model_name(name)
        if not self.exists(name):
            return RecoveryReport(name)
        with space.os_errors("recover", name), self.lock(name, operation="recover"):
            return recovery.recover_locked(self.layout, name)

    # ------------------------------------------------------------------ changes

    def check_source(self, src: str | os.PathLike[str]) -> SavedModelInfo:
        """Check that ``src`` can be staged: a complete SavedModel, outside the store. Touches nothing."""
        src_path = Path(src).expanduser()
        resolved = src_path.resolve()
        for inside in [self.root, *self.layout.area_roots.values()]:
            inside = inside.resolve()
            if inside == resolved or resolved in inside.parents:
                raise NotASavedModel(f"source {src_path} contains the store directory {inside}; "
                                     "expected a SavedModel directory outside the store")
        info = check_savedmodel(src_path, required_signature=self.required_signature, tags=self.serving_tags)
        try:
            fsutil.tree_size(src_path)
        except fsutil.UnsupportedEntry as exc:
            raise NotASavedModel(f"source {src_path} holds {exc.filename} ({exc.strerror}); expected only "
                                 "regular files and directories") from None
        except OSError as exc:
            raise NotASavedModel(f"cannot read source {src_path}: {exc}") from None
        return info

    def stage(self, name: str, savedmodel_dir: str | os.PathLike[str], run_id: str | None = None,
              detail: dict | None = None) -> int:
        """Copy a SavedModel into ``staging/<name>/<v>`` as the next version number; return ``v``.

        ``detail``: plain values kept in the version's stage history line (the deploy keeps the
        digest of the model file it exported there, to recognise a re-run of the same model).

        The copy goes to a dot-named temp dir (fsync'd file by file), is checked
        as a complete SavedModel, then appears under its number by one rename.
        The model lock is held only to hand out the number and to publish the
        copy, not during the copy.
        """
        return transitions.stage(self, check_model_name(name), Path(savedmodel_dir).expanduser(), run_id, detail)

    def promote(self, name: str, version: int, run_id: str | None = None) -> Path:
        """Make staged ``version`` appear in production by one rename; return its production path.

        Refused (:class:`UnknownVersion`) when the version is not staged, and
        (:class:`NotNewerThanProduction`) when production serves a newer
        version (TF Serving's ``latest`` policy would ignore it: roll back
        instead). Promoting a version already in production returns its path.
        Afterwards production keeps the newest ``retention`` versions.
        """
        return transitions.promote(self, check_model_name(name), check_version(version), run_id)

    def reject(self, name: str, version: int, reason: str, run_id: str | None = None) -> Path:
        """Move ``version`` from staging (or from production: the undo of a promote) to ``rejected/``.

        ``reason`` is kept beside it in ``rejected/<name>/<v>.reason.json``.
        Rejecting a version that is already rejected returns its path.
        """
        return transitions.reject(self, check_model_name(name), check_version(version), reason, run_id)

    def rollback(self, name: str, to_version: int | None = None, run_id: str | None = None,
                 reason: str | None = None) -> RollbackResult:
        """Make production serve the previous version (or ``to_version``, which must be in production).

        Every newer production version moves to ``rejected/`` with the reason
        "rolled back" (``"rolled back: <reason>"`` when ``reason`` says why; the
        history lines keep the same), newest first, each by one rename, so that production
        serves a complete version at every moment. Refused with
        :class:`NothingToRollBackTo` when production has no older version.
        """
        name = check_model_name(name)
        to_version = None if to_version is None else check_version(to_version, what="rollback target")
        return transitions.rollback(self, name, to_version, run_id, reason)
