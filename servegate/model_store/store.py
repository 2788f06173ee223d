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
4. does its work, fsyncing files and directories, and appends its history.

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
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from servegate.model_store import counter as counter_mod
from servegate.model_store import fsutil
from servegate.model_store import history as history_mod
from servegate.model_store.errors import (
    InvalidModelName,
    NotASavedModel,
    NotEnoughSpace,
    NothingToRollBackTo,
    NotNewerThanProduction,
    StoreError,
    StoreIOError,
    StoreNotWritable,
    UnknownModel,
    UnknownVersion,
    VersionConflict,
)
from servegate.model_store.history import HistoryRecord
from servegate.model_store.layout import (
    AREAS,
    ATOMIC_TMP_PREFIX,
    PRODUCTION,
    REJECTED,
    STAGING,
    TMP_PREFIX,
    Layout,
    check_model_name,
    check_version,
    new_token,
    parse_reason_file_name,
    parse_tmp_name,
    parse_version_name,
    reason_file_name,
    tmp_name,
)
from servegate.model_store.locking import InflightMarker, ModelLock, lock_is_held, marker_is_live, now_iso, read_holder
from servegate.model_store.savedmodel import DEFAULT_SIGNATURE, SERVING_TAGS, SavedModelInfo, check_savedmodel

DEFAULT_RETENTION = 3
DEFAULT_LOCK_TIMEOUT = 30.0
ROLLED_BACK = "rolled back"
REASON_TMP_PREFIX = TMP_PREFIX + "reason-"
_DEFAULT = object()
_SPACE_MARGIN = 16 * 1024 * 1024
_NOT_WRITABLE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


# --------------------------------------------------------------------------- results


@dataclass
class StoreStatus:
    model: str
    root: str
    exists: bool                          # False: the store holds nothing for this model
    base_paths: dict[str, str]            # area -> base path (production's is what TF Serving watches)
    versions: dict[str, list[int]]        # area -> versions, ascending
    serving_version: int | None           # highest in production (TF Serving's "latest" policy)
    rejected_reasons: dict[int, str]      # rejected version -> reason
    next_version: int                     # what the next stage would get (at least)
    history: list[HistoryRecord]          # the most recent transitions, oldest first
    lock_holder: dict | None = None       # who holds the model lock now, if anyone
    leftovers: list[str] = field(default_factory=list)  # temp entries awaiting recovery or in progress

    @property
    def production(self) -> list[int]:
        return self.versions[PRODUCTION]

    @property
    def staging(self) -> list[int]:
        return self.versions[STAGING]

    @property
    def rejected(self) -> list[int]:
        return self.versions[REJECTED]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rejected_reasons"] = {str(k): v for k, v in self.rejected_reasons.items()}
        data["history"] = [r.to_dict() for r in self.history]
        return data


@dataclass
class RollbackResult:
    model: str
    from_version: int            # what production served before
    to_version: int              # what production serves now
    rejected: list[int]          # versions moved from production to rejected/ ("rolled back"), newest first
    production_path: str         # the base path
    changed: bool = True         # False: production already served to_version

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RecoveryReport:
    model: str
    actions: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.actions)

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt_versions(versions) -> str:
    versions = sorted(versions)
    return ", ".join(map(str, versions)) if versions else "none"


# --------------------------------------------------------------------------- the store


class ModelStore:
    """A versioned store of SavedModels for TensorFlow Serving.

    ``root``: the store root (default: :func:`servegate.settings.default_store_root`).
    ``retention``: production versions kept as rollback targets (>= 1).
    ``lock_timeout``: seconds a change waits for the model's lock (None: forever).
    ``areas``: optional per-area directories, e.g. ``{"production": "/mnt/models"}``
    (a production on another filesystem is promoted into by copy + rename).
    ``required_signature``/``serving_tags``: what makes a SavedModel servable.
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
            from servegate.settings import default_store_root

            root = default_store_root()
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
            raise StoreError(f"retention {retention!r} is not allowed; expected an integer >= 1 "
                             "(the number of production versions kept as rollback targets)")
        if lock_timeout is not None and (not isinstance(lock_timeout, (int, float)) or lock_timeout < 0):
            raise StoreError(f"lock_timeout {lock_timeout!r} is not allowed; expected seconds >= 0 or None")
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
        existing = self._scan_area(area, name).get(version)
        return existing if existing is not None else self.base_path(area, name) / str(version)

    # ------------------------------------------------------------------ reading (no lock, no writes)

    def _scan_area(self, area: str, name: str) -> dict[int, Path]:
        base = self.base_path(area, name)
        found: dict[int, Path] = {}
        try:
            entries = sorted(os.listdir(base))
        except (FileNotFoundError, NotADirectoryError):
            return found
        for entry in entries:
            version = parse_version_name(entry)
            if version is None:
                continue
            path = base / entry
            if not path.is_dir():
                continue
            # Two spellings of one number ("5", "005"): prefer the one the store writes.
            if version not in found or entry == str(version):
                found[version] = path
        return found

    def _scan(self, name: str) -> dict[str, dict[int, Path]]:
        return {area: self._scan_area(area, name) for area in AREAS}

    def versions(self, name: str, area: str) -> list[int]:
        """The versions in ``area``, ascending."""
        return sorted(self._scan_area(area, check_model_name(name)))

    def serving_version(self, name: str) -> int | None:
        """The version TF Serving serves under its default ``latest`` policy: the highest in production."""
        production = self.versions(name, PRODUCTION)
        return production[-1] if production else None

    def history(self, name: str, limit: int | None = None) -> list[HistoryRecord]:
        """The model's transitions, oldest first (the newest ``limit`` when given)."""
        return history_mod.read(self.layout.history_file(check_model_name(name)), limit)

    def _reasons(self, name: str) -> dict[int, str]:
        base = self.base_path(REJECTED, name)
        reasons: dict[int, str] = {}
        try:
            entries = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            return reasons
        for entry in entries:
            version = parse_reason_file_name(entry)
            if version is None:
                continue
            try:
                data = json.loads((base / entry).read_text())
                reasons[version] = str(data.get("reason"))
            except (OSError, ValueError, AttributeError):
                reasons[version] = "(reason file unreadable)"
        return reasons

    def _leftovers(self, name: str) -> list[str]:
        found = []
        for area in AREAS:
            base = self.base_path(area, name)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                found += [str(base / e) for e in sorted(os.listdir(base)) if e.startswith(TMP_PREFIX)]
        return found

    def exists(self, name: str) -> bool:
        """Whether the store holds anything for ``name`` (a version, or its metadata)."""
        name = check_model_name(name)
        if self.layout.meta_dir(name).is_dir():
            return True
        return any(self.base_path(area, name).is_dir() for area in AREAS)

    def models(self) -> list[str]:
        """Every model name the store knows, sorted."""
        names: set[str] = set()
        for base in [*self.layout.area_roots.values(), self.layout.meta_root()]:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.listdir(base):
                    with contextlib.suppress(InvalidModelName):
                        if (base / entry).is_dir():
                            names.add(check_model_name(entry))
        return sorted(names)

    def status(self, name: str, history_limit: int = 10) -> StoreStatus:
        """Versions per area, the version production serves, recent history. Reads only."""
        name = check_model_name(name)
        self._check_root_is_dir()
        scan = self._scan(name)
        versions = {area: sorted(scan[area]) for area in AREAS}
        lock_file = self.layout.lock_file(name)
        holder = None
        if lock_is_held(lock_file):
            holder = read_holder(self.layout.holder_file(name)) or {"pid": None, "since": None}
        return StoreStatus(
            model=name,
            root=str(self.root),
            exists=self.exists(name),
            base_paths={area: str(self.base_path(area, name)) for area in AREAS},
            versions=versions,
            serving_version=versions[PRODUCTION][-1] if versions[PRODUCTION] else None,
            rejected_reasons={v: r for v, r in sorted(self._reasons(name).items()) if v in scan[REJECTED]},
            next_version=self._next_version(name, scan),
            history=self.history(name, history_limit),
            lock_holder=holder,
            leftovers=self._leftovers(name),
        )

    def _next_version(self, name: str, scan: dict[str, dict[int, Path]] | None = None) -> int:
        """One above every number the model has ever used (counter, areas, temp dirs, reasons, history)."""
        scan = scan if scan is not None else self._scan(name)
        highest = counter_mod.read_counter(self.layout.counter_file(name))
        for area in AREAS:
            highest = max([highest, *scan[area]])
            base = self.base_path(area, name)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.listdir(base):
                    parsed = parse_tmp_name(entry)
                    number = parsed.version if parsed else parse_reason_file_name(entry)
                    if number is None:
                        number = parse_version_name(entry)  # numeric files too
                    if number is not None:
                        highest = max(highest, number)
        for record in self.history(name):
            if isinstance(record.version, int):
                highest = max(highest, record.version)
        return highest + 1

    # ------------------------------------------------------------------ locking

    def _model_lock(self, name: str) -> ModelLock:
        return ModelLock(name, self.layout.lock_file(name), self.layout.holder_file(name))

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
        Yields the holder record (pid, host, since, operation, run_id).
        """
        name = check_model_name(name)
        self._ensure_root_writable()
        self._ensure_dir(self.layout.meta_dir(name))
        with self._model_lock(name).hold(timeout=self.lock_timeout if timeout is _DEFAULT else timeout,
                                         operation=operation, run_id=run_id,
                                         share_with_threads=share_with_threads) as holder:
            yield holder

    @contextlib.contextmanager
    def _locked(self, name: str, operation: str, run_id: str | None) -> Iterator[dict]:
        with self.lock(name, operation=operation, run_id=run_id) as holder:
            yield holder

    # ------------------------------------------------------------------ writability

    def _ensure_root_writable(self) -> None:
        root = self.root
        if os.path.lexists(root) and not root.is_dir():
            raise StoreNotWritable(f"store root {root} is not a directory; expected a directory "
                                   "(or a path where one can be created)")
        try:
            fsutil.makedirs_durable(root)
        except OSError as exc:
            raise StoreNotWritable(f"cannot create store root {root}: {exc.strerror or exc}") from None
        if not os.access(root, os.W_OK | os.X_OK):
            ro = _is_read_only_fs(root)
            raise StoreNotWritable(f"store root {root} is not writable"
                                   + (" (read-only filesystem)" if ro else " (permission denied)"))

    def _ensure_dir(self, path: Path) -> None:
        if path.is_dir():
            if not os.access(path, os.W_OK | os.X_OK):
                raise StoreNotWritable(f"store directory {path} is not writable"
                                       + (" (read-only filesystem)" if _is_read_only_fs(path) else ""))
            return
        try:
            fsutil.makedirs_durable(path)
        except OSError as exc:
            if exc.errno in _NOT_WRITABLE_ERRNOS:
                raise StoreNotWritable(f"cannot create store directory {path}: {exc.strerror}") from None
            raise StoreIOError(f"cannot create store directory {path}: {exc}") from None

    def _check_root_is_dir(self) -> None:
        if os.path.lexists(self.root) and not self.root.is_dir():
            raise StoreNotWritable(f"store root {self.root} is not a directory; expected a directory "
                                   "(or a path where one can be created)")

    def _require_model(self, name: str) -> None:
        self._check_root_is_dir()
        if not self.exists(name):
            known = self.models()
            raise UnknownModel(f"the store {self.root} holds no model named {name!r}"
                               + (f"; models there: {', '.join(known[:20])}" if known else "; it is empty"))

    # ------------------------------------------------------------------ history

    def _record(self, name: str, version: int, from_area: str | None, to_area: str | None, *,
                operation: str, reason: str | None = None, run_id: str | None = None,
                started: str | None = None, detail: dict | None = None) -> HistoryRecord:
        record = HistoryRecord(
            time=now_iso(), model=name, version=version, from_area=from_area, to_area=to_area,
            reason=reason, run_id=run_id, operation=operation, started=started,
            pid=os.getpid(), host=socket.gethostname(), detail=detail or {},
        )
        history_mod.append(self.layout.history_file(name), record)
        fsutil.checkpoint(f"{operation}:recorded")
        return record

    # ------------------------------------------------------------------ moving versions

    def _move(self, name: str, src: Path, dst: Path, *, kind: str, version: int) -> str:
        """Move a version directory ``src`` to ``dst`` (which must not exist). Returns "rename" or "copy"."""
        fsutil.checkpoint(f"{kind}:before-rename")
        try:
            fsutil.rename_noreplace(src, dst)
        except FileExistsError:
            raise VersionConflict(f"{dst} already exists (made outside servegate?); version {version} of "
                                  f"model {name!r} stays in {src.parent}") from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return self._copy_move(name, src, dst, kind=kind, version=version)
            if exc.errno == errno.ENOTEMPTY:
                raise VersionConflict(f"{dst} already exists (made outside servegate?); version {version} "
                                      f"of model {name!r} stays in {src.parent}") from None
            raise
        fsutil.fsync_dir(dst.parent)
        if src.parent != dst.parent:
            fsutil.fsync_dir(src.parent)
        fsutil.checkpoint(f"{kind}:renamed")
        return "rename"

    def _copy_move(self, name: str, src: Path, dst: Path, *, kind: str, version: int) -> str:
        """The move between filesystems: copy to a dot-named temp dir beside ``dst``, fsync, rename, drop ``src``."""
        _, needed = fsutil.tree_size(src)
        free = _free_bytes(dst.parent)
        if needed + _SPACE_MARGIN > free:
            raise NotEnoughSpace(f"{dst.parent} has {free} bytes free; version {version} of model {name!r} "
                                 f"needs {needed} bytes (+{_SPACE_MARGIN} margin) to be copied there")
        token = new_token()
        tmp = dst.parent / tmp_name(kind, version, token)
        os.mkdir(tmp)
        try:
            fsutil.fsync_dir(dst.parent)
            fsutil.checkpoint(f"{kind}:tmp-created")
            fsutil.copy_tree(src, tmp)
            if fsutil.tree_size(tmp) != fsutil.tree_size(src):
                raise StoreIOError(f"the copy of {src} in {tmp} differs in size from its source")
            fsutil.checkpoint(f"{kind}:before-rename")
            try:
                fsutil.rename_noreplace(tmp, dst)
            except FileExistsError:
                raise VersionConflict(f"{dst} already exists (made outside servegate?); version {version} "
                                      f"of model {name!r} stays in {src.parent}") from None
            fsutil.fsync_dir(dst.parent)
            fsutil.checkpoint(f"{kind}:renamed")
        except BaseException:
            with contextlib.suppress(OSError):
                fsutil.remove_tree(tmp)
            raise
        # The destination is complete and durable; now drop the source, first
        # out of sight (one rename to a dot name), then from the disk.
        gone = src.parent / tmp_name("remove", version, token)
        os.rename(src, gone)
        fsutil.fsync_dir(src.parent)
        fsutil.checkpoint(f"{kind}:source-hidden")
        fsutil.remove_tree(gone)
        return "copy"

    def _to_rejected(self, name: str, version: int, src: Path, from_area: str, reason: str, *,
                     operation: str, run_id: str | None, started: str | None,
                     detail: dict | None = None) -> Path:
        base = self.base_path(REJECTED, name)
        self._ensure_dir(base)
        dst = base / str(version)
        if os.path.lexists(dst):
            raise VersionConflict(f"{dst} already exists (made outside servegate?); version {version} of "
                                  f"model {name!r} stays in {src.parent}")
        reason_doc = {"model": name, "version": version, "reason": reason, "from_area": from_area,
                      "operation": operation, "time": now_iso(), "run_id": run_id}
        fsutil.write_atomic(base / reason_file_name(version), (json.dumps(reason_doc, indent=2) + "\n").encode(),
                            tmp_prefix=REASON_TMP_PREFIX)
        fsutil.checkpoint(f"{operation}:reason-written")
        how = self._move(name, src, dst, kind=operation, version=version)
        self._record(name, version, from_area, REJECTED, operation=operation, reason=reason, run_id=run_id,
                     started=started, detail={**(detail or {}), "moved_by": how})
        return dst

    # ------------------------------------------------------------------ recovery

    def recover(self, name: str) -> RecoveryReport:
        """Repair what a crashed change left behind (also runs at the start of every change).

        Removes temp dirs of dead processes, finishes or undoes half-done
        cross-filesystem moves (never changing production), drops orphan reason
        files and dead in-flight markers, and appends history records for
        transitions whose line a crash lost. A dead holder's lock needs nothing:
        the kernel released it with the holder. A model the store does not
        know is left alone.
        """
        name = check_model_name(name)
        if not self.exists(name):
            return RecoveryReport(name)
        with self._os_errors("recover", name), self._locked(name, "recover", None):
            return self._recover_locked(name)

    def _recover_locked(self, name: str) -> RecoveryReport:
        report = RecoveryReport(name)
        meta = self.layout.meta_dir(name)
        # 1. temp files of atomic writes (counter, holder) of dead writers: all writers hold the lock, we do now.
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(meta):
                if entry.startswith(ATOMIC_TMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(meta / entry)
                    report.actions.append(f"removed leftover temp file {meta / entry}")
        # 2. in-flight markers: live ones protect their temp dirs.
        inflight = self.layout.inflight_dir(name)
        live_tokens: set[str] = set()
        dead_markers: list[Path] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(inflight):
                if marker_is_live(inflight / entry):
                    live_tokens.add(entry)
                else:
                    dead_markers.append(inflight / entry)
        # 3. temp dirs beside the versions, in every area.
        for area in AREAS:
            base = self.base_path(area, name)
            try:
                entries = sorted(os.listdir(base))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                parsed = parse_tmp_name(entry)
                if parsed is None and entry.startswith(REASON_TMP_PREFIX):
                    pass  # a reason file's temp file: written under the lock, so its writer is dead
                elif parsed is None or parsed.token in live_tokens:
                    continue
                fsutil.remove_tree(base / entry)
                report.actions.append(f"removed leftover temp entry {base / entry}")
        for marker in dead_markers:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker)
        # 4. a version in two areas: half-finished cross-filesystem move.
        scan = self._scan(name)
        for version in sorted(set().union(*scan.values())):
            where = [area for area in AREAS if version in scan[area]]
            if len(where) < 2:
                continue
            keep = PRODUCTION if PRODUCTION in where else STAGING
            for area in where:
                if area == keep:
                    continue
                loser, winner = scan[area][version], scan[keep][version]
                if fsutil.tree_digest(loser) != fsutil.tree_digest(winner):
                    report.actions.append(f"left version {version} in both {winner} and {loser}: "
                                          "their contents differ (resolve by hand)")
                    continue
                hidden = loser.parent / tmp_name("remove", version, new_token())
                os.rename(loser, hidden)
                fsutil.fsync_dir(loser.parent)
                if area == REJECTED:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(loser.parent / reason_file_name(version))
                fsutil.remove_tree(hidden)
                del scan[area][version]
                report.actions.append(f"removed {loser}: version {version} is complete in {winner} "
                                      "(a move between filesystems was cut short)")
        # 5. reason files without their version.
        rejected_base = self.base_path(REJECTED, name)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in sorted(os.listdir(rejected_base)):
                version = parse_reason_file_name(entry)
                if version is not None and version not in scan[REJECTED]:
                    os.unlink(rejected_base / entry)
                    report.actions.append(f"removed orphan reason file {rejected_base / entry}")
        # 6. history lines a crash lost between a transition and its record.
        last_area: dict[int, str | None] = {}
        for record in self.history(name):
            if isinstance(record.version, int):
                last_area[record.version] = record.to_area
        actual = {v: area for area in AREAS for v in scan[area]}
        for version in sorted(set(last_area) | set(actual)):
            recorded, now = last_area.get(version), actual.get(version)
            if recorded == now:
                continue
            if now is None:
                reason = f"version {version} is gone from {recorded} (removed outside servegate)"
            elif version not in last_area:
                reason = f"found in {now} with no history (made outside servegate, or its record was lost)"
            elif recorded is None:
                reason = f"reappeared in {now} (restored outside servegate)"
            else:
                reason = f"found in {now} after a crash (its history line was lost)"
            self._record(name, version, recorded, now, operation="recover", reason=reason)
            report.actions.append(f"history: version {version} {recorded} -> {now} ({reason})")
        fsutil.checkpoint("recover:done")
        return report

    @contextlib.contextmanager
    def _os_errors(self, operation: str, name: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except OSError as exc:
            if exc.errno in (errno.EROFS,):
                raise StoreNotWritable(f"{operation} of model {name!r} failed: {exc}") from exc
            if exc.errno == errno.ENOSPC:
                raise NotEnoughSpace(f"{operation} of model {name!r} failed: {exc}") from exc
            raise StoreIOError(f"{operation} of model {name!r} failed: {exc}") from exc

    # ------------------------------------------------------------------ stage

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

    def stage(self, name: str, savedmodel_dir: str | os.PathLike[str], run_id: str | None = None) -> int:
        """Copy a SavedModel into ``staging/<name>/<v>`` as the next version number; return ``v``.

        The copy goes to a dot-named temp dir (fsync'd file by file), is checked
        as a complete SavedModel, then appears under its number by one rename.
        The model lock is held only to hand out the number and to publish the
        copy, not during the copy.
        """
        name = check_model_name(name)
        src = Path(savedmodel_dir).expanduser()
        self.check_source(src)
        _, needed = fsutil.tree_size(src)
        self._ensure_root_writable()
        staging = self.base_path(STAGING, name)
        free = _free_bytes(staging)
        if needed + _SPACE_MARGIN > free:
            raise NotEnoughSpace(f"{staging} has {free} bytes free; the SavedModel {src} needs {needed} "
                                 f"bytes (+{_SPACE_MARGIN} margin)")
        started = now_iso()
        with self._os_errors("stage", name):
            self._ensure_dir(self.layout.meta_dir(name))
            self._ensure_dir(self.layout.inflight_dir(name))
            self._ensure_dir(staging)
            marker: InflightMarker | None = None
            tmp: Path | None = None
            try:
                with self._locked(name, "stage", run_id):
                    self._recover_locked(name)
                    version = self._next_version(name)
                    counter_mod.write_counter(self.layout.counter_file(name), version)
                    fsutil.checkpoint("stage:counter-written")
                    token = new_token()
                    marker = InflightMarker(self.layout.inflight_marker(name, token)).create()
                    tmp = staging / tmp_name("stage", version, token)
                    os.mkdir(tmp)
                    fsutil.fsync_dir(staging)
                    fsutil.checkpoint("stage:tmp-created")
                # Unlocked: the marker keeps recovery away from tmp while we copy.
                fsutil.copy_tree(src, tmp)
                try:
                    check_savedmodel(tmp, required_signature=self.required_signature, tags=self.serving_tags)
                except NotASavedModel as exc:
                    raise NotASavedModel(f"the copy of {src} changed or broke while it was staged: {exc}") from None
                fsutil.checkpoint("stage:copied")
                with self._locked(name, "stage", run_id):
                    final = staging / str(version)
                    try:
                        fsutil.rename_noreplace(tmp, final)
                    except (FileExistsError, OSError) as exc:
                        if isinstance(exc, FileExistsError) or exc.errno == errno.ENOTEMPTY:
                            raise VersionConflict(f"{final} already exists (made outside servegate?)") from None
                        raise
                    tmp = None
                    fsutil.fsync_dir(staging)
                    fsutil.checkpoint("stage:renamed")
                    self._record(name, version, None, STAGING, operation="stage", reason="staged", run_id=run_id,
                                 started=started, detail={"source": str(src.absolute())})
                    marker.release()
                    marker = None
            finally:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        fsutil.remove_tree(tmp)
                if marker is not None:
                    marker.release()
        return version

    # ------------------------------------------------------------------ promote

    def promote(self, name: str, version: int, run_id: str | None = None) -> Path:
        """Make staged ``version`` appear in production by one rename; return its production path.

        Refused (:class:`UnknownVersion`) when the version is not staged, and
        (:class:`NotNewerThanProduction`) when production serves a newer
        version (TF Serving's ``latest`` policy would ignore it: roll back
        instead). Promoting a version already in production returns its path.
        Afterwards production keeps the newest ``retention`` versions.
        """
        name = check_model_name(name)
        version = check_version(version)
        self._require_model(name)
        scan = self._scan(name)
        if version not in scan[PRODUCTION]:
            self._check_promotable(name, version, scan)  # refuse before touching anything
        self._ensure_root_writable()
        with self._os_errors("promote", name), self._locked(name, "promote", run_id) as holder:
            started = holder.get("since") or now_iso()
            self._recover_locked(name)
            scan = self._scan(name)
            if version in scan[PRODUCTION]:
                return scan[PRODUCTION][version]
            self._check_promotable(name, version, scan)
            src = scan[STAGING][version]
            try:
                check_savedmodel(src, required_signature=self.required_signature, tags=self.serving_tags)
            except NotASavedModel as exc:
                raise NotASavedModel(f"staged version {version} of model {name!r} is not a complete "
                                     f"SavedModel: {exc}") from None
            base = self.base_path(PRODUCTION, name)
            self._ensure_dir(base)
            dst = base / str(version)
            how = self._move(name, src, dst, kind="promote", version=version)
            previous = max(scan[PRODUCTION]) if scan[PRODUCTION] else None
            self._record(name, version, STAGING, PRODUCTION, operation="promote", reason="promoted",
                         run_id=run_id, started=started, detail={"moved_by": how, "previous": previous})
            self._apply_retention(name, run_id, started)
            return dst

    def _check_promotable(self, name: str, version: int, scan: dict[str, dict[int, Path]]) -> None:
        if version not in scan[STAGING]:
            if version in scan[REJECTED]:
                reason = self._reasons(name).get(version, "no reason recorded")
                raise UnknownVersion(f"version {version} of model {name!r} was rejected ({reason}); only staged "
                                     f"versions can be promoted (staged: {_fmt_versions(scan[STAGING])})")
            raise UnknownVersion(f"version {version} of model {name!r} is not staged; staged versions: "
                                 f"{_fmt_versions(scan[STAGING])} (in {self.base_path(STAGING, name)})")
        if scan[PRODUCTION] and version < max(scan[PRODUCTION]):
            serving = max(scan[PRODUCTION])
            raise NotNewerThanProduction(
                f"version {version} of model {name!r} is older than version {serving} that production serves; "
                f"TF Serving's latest policy would keep serving {serving}. Reject {version}, or roll back "
                f"production instead")

    def _apply_retention(self, name: str, run_id: str | None, started: str | None) -> list[int]:
        production = sorted(self._scan_area(PRODUCTION, name).items())
        retired = []
        for version, path in production[: max(0, len(production) - self.retention)]:
            self._to_rejected(name, version, path, PRODUCTION,
                              f"retired (retention keeps the newest {self.retention} production versions)",
                              operation="retire", run_id=run_id, started=started)
            retired.append(version)
        return retired

    # ------------------------------------------------------------------ reject

    def reject(self, name: str, version: int, reason: str, run_id: str | None = None) -> Path:
        """Move ``version`` from staging (or from production: the undo of a promote) to ``rejected/``.

        ``reason`` is kept beside it in ``rejected/<name>/<v>.reason.json``.
        Rejecting a version that is already rejected returns its path.
        """
        name = check_model_name(name)
        version = check_version(version)
        if not isinstance(reason, str) or not reason.strip():
            raise StoreError(f"reject of version {version} of model {name!r} needs a reason (a non-empty string); "
                             f"got {reason!r}")
        self._require_model(name)
        scan = self._scan(name)
        if not any(version in scan[area] for area in AREAS):
            self._unknown_version(name, version, scan, "reject")
        self._ensure_root_writable()
        with self._os_errors("reject", name), self._locked(name, "reject", run_id) as holder:
            started = holder.get("since") or now_iso()
            self._recover_locked(name)
            scan = self._scan(name)
            if version in scan[PRODUCTION]:
                from_area = PRODUCTION
            elif version in scan[STAGING]:
                from_area = STAGING
            elif version in scan[REJECTED]:
                return scan[REJECTED][version]
            else:
                self._unknown_version(name, version, scan, "reject")
            return self._to_rejected(name, version, scan[from_area][version], from_area, reason.strip(),
                                     operation="reject", run_id=run_id, started=started)

    def _unknown_version(self, name: str, version: int, scan: dict[str, dict[int, Path]], operation: str):
        where = "; ".join(f"{area}: {_fmt_versions(scan[area])}" for area in AREAS)
        raise UnknownVersion(f"cannot {operation} version {version} of model {name!r}: the store has no such "
                             f"version ({where})")

    # ------------------------------------------------------------------ rollback

    def _plan_rollback(self, name: str, to_version: int | None, scan: dict[str, dict[int, Path]]
                       ) -> tuple[int, int, list[int]]:
        production = sorted(scan[PRODUCTION])
        base = self.base_path(PRODUCTION, name)
        if not production:
            raise NothingToRollBackTo(f"production of model {name!r} is empty ({base}); nothing to roll back to")
        current = production[-1]
        if to_version is None:
            if len(production) == 1:
                raise NothingToRollBackTo(
                    f"production of model {name!r} holds only version {current} ({base}); there is no older "
                    f"version to roll back to (rejected: {_fmt_versions(scan[REJECTED])})")
            target = production[-2]
        else:
            target = to_version
            where = next((area for area in AREAS if target in scan[area]), None)
            hint = f" (it is in {where})" if where else " (the store has no such version)"
            if target > current:
                raise UnknownVersion(f"version {target} of model {name!r}{hint} is newer than version {current} "
                                     "that production serves; rollback only goes back (promote a staged "
                                     "version instead)")
            if target not in scan[PRODUCTION]:
                raise UnknownVersion(f"version {target} of model {name!r} is not in production{hint}; versions "
                                     f"production can roll back to: {_fmt_versions(production[:-1])}")
        to_move = [v for v in reversed(production) if v > target]
        return current, target, to_move

    def rollback(self, name: str, to_version: int | None = None, run_id: str | None = None) -> RollbackResult:
        """Make production serve the previous version (or ``to_version``, which must be in production).

        Every newer production version moves to ``rejected/`` with the reason
        "rolled back", newest first, each by one rename, so that production
        serves a complete version at every moment. Refused with
        :class:`NothingToRollBackTo` when production has no older version.
        """
        name = check_model_name(name)
        to_version = None if to_version is None else check_version(to_version, what="rollback target")
        self._require_model(name)
        self._plan_rollback(name, to_version, self._scan(name))  # refuse before touching anything
        self._ensure_root_writable()
        with self._os_errors("rollback", name), self._locked(name, "rollback", run_id) as holder:
            started = holder.get("since") or now_iso()
            self._recover_locked(name)
            scan = self._scan(name)
            current, target, to_move = self._plan_rollback(name, to_version, scan)
            for version in to_move:
                self._to_rejected(name, version, scan[PRODUCTION][version], PRODUCTION, ROLLED_BACK,
                                  operation="rollback", run_id=run_id, started=started,
                                  detail={"from_version": current, "to_version": target})
            return RollbackResult(model=name, from_version=current, to_version=target, rejected=to_move,
                                  production_path=str(self.base_path(PRODUCTION, name)), changed=bool(to_move))


def _free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds (or will hold) ``path``."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def _is_read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def wait_for_unlock(store: ModelStore, name: str, timeout: float = 10.0) -> bool:
    """Poll until nobody holds the model lock (tests and tools). True when free within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lock_is_held(store.layout.lock_file(name)):
            return True
        time.sleep(0.02)
    return False
