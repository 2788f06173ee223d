"""Moving a version directory between areas: one rename, or a copy when the areas are on two filesystems.

Same filesystem: one ``rename`` (never replacing: an existing destination is a
:class:`VersionConflict`), then the parents are fsync'd. Two filesystems
(``EXDEV``): copy into a dot-named temp dir beside the destination, compare
sizes, fsync, one rename into place; only then is the source hidden (a rename
to a dot name) and removed. A crash at any point leaves either a temp dir
that recovery removes, or the version complete in both areas, which recovery
resolves (see :mod:`servegate.model_store.recovery`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from servegate.model_store import fsutil
from servegate.model_store.errors import StoreIOError, VersionConflict
from servegate.model_store.layout import new_token, tmp_name
from servegate.model_store.space import ensure_space


def version_conflict(dst: Path, name: str | None = None, version: int | None = None,
                     stays_in: Path | None = None) -> VersionConflict:
    """The error for a destination that exists although the store did not put it there."""
    message = f"{dst} already exists (made outside servegate?)"
    if stays_in is not None:
        message += f"; version {version} of model {name!r} stays in {stays_in}"
    return VersionConflict(message)


def rename_or_conflict(src: Path, dst: Path, conflict: VersionConflict) -> None:
    """One rename that never replaces: an existing ``dst`` raises ``conflict``; EXDEV and other errors propagate."""
    try:
        fsutil.rename_noreplace(src, dst)
    except FileExistsError:
        raise conflict from None
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY:
            raise conflict from None
        raise


def move_version(name: str, src: Path, dst: Path, *, kind: str, version: int) -> str:
    """Move a version directory ``src`` to ``dst`` (which must not exist). Returns "rename" or "copy"."""
    conflict = version_conflict(dst, name, version, stays_in=src.parent)
    fsutil.checkpoint(f"{kind}:before-rename")
    try:
        rename_or_conflict(src, dst, conflict)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return _copy_move(name, src, dst, kind=kind, version=version, conflict=conflict)
        raise
    fsutil.fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsutil.fsync_dir(src.parent)
    fsutil.checkpoint(f"{kind}:renamed")
    return "rename"


def _copy_move(name: str, src: Path, dst: Path, *, kind: str, version: int, conflict: VersionConflict) -> str:
    """The move between filesystems: copy to a dot-named temp dir beside ``dst``, fsync, rename, drop ``src``."""
    _, needed = fsutil.tree_size(src)
    ensure_space(dst.parent, needed, f"version {version} of model {name!r}", " to be copied there")
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
        rename_or_conflict(tmp, dst, conflict)
        fsutil.fsync_dir(dst.parent)
        fsutil.checkpoint(f"{kind}:renamed")
    except BaseException:
        with contextlib.suppress(OSError):
            fsutil.remove_tree(tmp)
        raise
    # The destination is complete and durable; now drop the source, first
    # out of sight (one rename to a dot name), then from the disk.
    gone = hide_version_dir(src, version, token)
    fsutil.checkpoint(f"{kind}:source-hidden")
    fsutil.remove_tree(gone)
    return "copy"


def hide_version_dir(path: Path, version: int, token: str | None = None) -> Path:
    """The first half of removing a version: one rename to a dot name (fsync'd) that recovery would remove.

    Returns the hidden path; the caller removes it (``fsutil.remove_tree``).
    """
    hidden = path.parent / tmp_name("remove", version, token or new_token())
    os.rename(path, hidden)
    fsutil.fsync_dir(path.parent)
    return hidden
