"""Space and writability checks, made before a change touches anything, and the mapping of OS errors.

A change first proves that the store can take it (root a writable directory,
enough free bytes where the copy goes); what the OS still refuses mid-change
becomes one of the store's named errors (:func:`os_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from servegate.model_store import fsutil
from servegate.model_store.errors import NotEnoughSpace, StoreError, StoreIOError, StoreNotWritable

#: kept free beyond a copy's size (filesystem metadata, the history line, other writers)
SPACE_MARGIN = 16 * 1024 * 1024
_NOT_WRITABLE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds (or will hold) ``path``."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def ensure_space(directory: Path, needed: int, what: str, purpose: str = "") -> None:
    """Raise :class:`NotEnoughSpace` unless ``directory``'s filesystem has ``needed`` bytes plus the margin."""
    free = free_bytes(directory)
    if needed + SPACE_MARGIN > free:
        raise NotEnoughSpace(f"not enough space: {directory} has {free} bytes free; {what} needs {needed} bytes "
                             f"(+{SPACE_MARGIN} margin){purpose}", subject=str(directory))


def is_read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_root_is_dir(root: Path) -> None:
    if os.path.lexists(root) and not root.is_dir():
        raise StoreNotWritable(f"store root {root} is not a directory; expected a directory "
                               "(or a path where one can be created)", subject=str(root))


def ensure_root_writable(root: Path) -> None:
    """The store root exists (made durably if needed) and this process may write in it."""
    check_root_is_dir(root)
    try:
        fsutil.makedirs_durable(root)
    except OSError as exc:
        raise StoreNotWritable(f"cannot create store root {root}: {exc.strerror or exc}", subject=str(root)) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreNotWritable(f"store root {root} is not writable"
                               + (" (read-only filesystem)" if is_read_only_fs(root) else " (permission denied)"),
                               subject=str(root))


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def check_writable(root: Path, subdirs: tuple[str, ...] = ()) -> None:
    """Refuse a store root that a change could not write, creating nothing (a check before any run).

    An existing root (and each of ``subdirs`` in it that exists) must be a directory
    this process may write; a missing root must have a nearest existing ancestor that
    is a writable directory, so that the first change can create it.
    """
    root = Path(root)
    check_root_is_dir(root)
    existing = _nearest_existing(root)
    if existing != root:
        if not existing.is_dir():
            raise StoreNotWritable(f"cannot create store root {root}: {existing} is not a directory; expected a "
                                   "directory path (or one that can be created)", subject=str(root))
        if not os.access(existing, os.W_OK | os.X_OK):
            why = "read-only filesystem" if is_read_only_fs(existing) else "permission denied"
            raise StoreNotWritable(f"cannot create store root {root}: {existing} is not writable ({why})",
                                   subject=str(root))
        return
    for path in (root, *(root / d for d in subdirs)):
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            why = "read-only filesystem" if is_read_only_fs(path) else "permission denied"
            raise StoreNotWritable(f"store {'root' if path == root else 'directory'} {path} is not writable ({why})",
                                   subject=str(path))


def ensure_dir(path: Path) -> None:
    """A writable directory at ``path`` (made durably if needed)."""
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise StoreNotWritable(f"store directory {path} is not writable"
                                   + (" (read-only filesystem)" if is_read_only_fs(path) else ""), subject=str(path))
        return
    try:
        fsutil.makedirs_durable(path)
    except OSError as exc:
        if exc.errno in _NOT_WRITABLE_ERRNOS:
            raise StoreNotWritable(f"cannot create store directory {path}: {exc.strerror}", subject=str(path)) from None
        raise StoreIOError(f"cannot create store directory {path}: {exc}", subject=str(path)) from None


@contextlib.contextmanager
def os_errors(operation: str, name: str) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into a :class:`StoreError` naming the operation and model."""
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
