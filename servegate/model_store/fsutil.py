"""Durable filesystem primitives: fsync'd copies, atomic writes and renames.

The rules the store relies on:

- a file's data is on disk before its name is published (``fsync`` the file,
  then rename), and a rename is on disk once the directory that holds the new
  name is ``fsync``'d (and the old parent, for a move between directories);
- :func:`rename_noreplace` never replaces an existing entry (``renameat2`` with
  ``RENAME_NOREPLACE`` where the kernel has it), because a plain ``rename`` of
  a directory silently replaces an empty directory of the same name;
- a move between filesystems (``EXDEV``) is a copy into a dot-named temp
  directory on the destination filesystem, ``fsync``, one rename into place,
  then the removal of the source.

:func:`checkpoint` is a no-op hook called between the steps of every
operation; the crash-safety tests set it (:func:`set_checkpoint_hook`) in a
child process to widen the windows between steps before they SIGKILL it.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

_checkpoint_hook: Callable[[str], None] | None = None


def set_checkpoint_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or with None remove) a function called with the name of every step. Tests only."""
    global _checkpoint_hook
    _checkpoint_hook = hook


def checkpoint(point: str) -> None:
    hook = _checkpoint_hook
    if hook is not None:
        hook(point)


class UnsupportedEntry(OSError):
    """A directory entry that is neither a regular file nor a directory (fifo, socket, device, dangling link)."""


# --------------------------------------------------------------------------- fsync


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of a directory (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of every directory it creates."""
    missing = []
    current = Path(path)
    while not current.is_dir():
        if os.path.lexists(current):
            if current.is_dir():  # made by someone else since we looked
                break
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(current))
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue
        fsync_dir(directory.parent)


# --------------------------------------------------------------------------- atomic files


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (a single write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, tmp_prefix: str = ".tmp-") -> None:
    """Replace ``path`` with ``data`` all at once: temp file, fsync, rename, fsync the directory."""
    path = Path(path)
    tmp = path.with_name(f"{tmp_prefix}{path.name}-{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        checkpoint("write-atomic:before-rename")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def append_durable(path: str | os.PathLike[str], line: bytes) -> None:
    """Append one line to a file and fsync it.

    When an earlier writer died in the middle of a line (the file does not end
    in a newline), a newline goes first, so that only the torn line is lost.
    """
    path = Path(path)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        if not line.endswith(b"\n"):
            line += b"\n"
        _write_all(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


# --------------------------------------------------------------------------- rename

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _renameat2 = _libc.renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc >= 2.28, or not Linux
    _renameat2 = None


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` to ``dst``; fail with FileExistsError instead of replacing ``dst``.

    Raises ``OSError(EXDEV)`` when the two are on different filesystems (or
    mount points). Durability is the caller's: fsync the parent(s) afterwards.
    """
    src_b, dst_b = os.fsencode(src), os.fsencode(dst)
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, src_b, _AT_FDCWD, dst_b, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), os.fsdecode(src_b), None, os.fsdecode(dst_b))
    # No RENAME_NOREPLACE on this filesystem: check, then rename. The store
    # only renames under the model's lock, so nobody else of ours races here.
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(dst_b))
    os.rename(src, dst)


# --------------------------------------------------------------------------- trees


def walk_tree(src: str | os.PathLike[str]) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under ``src`` (following symlinks, once per directory), parents before children.

    Yields ``(relative path, stat)``. Raises :class:`UnsupportedEntry` for an
    entry that is not a regular file or a directory, or a symlink loop.
    """
    src = Path(src)
    root_stat = os.stat(src)
    seen = {(root_stat.st_dev, root_stat.st_ino)}

    def visit(rel: Path) -> Iterator[tuple[Path, os.stat_result]]:
        with os.scandir(src / rel) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child = rel / entry.name
            try:
                st = os.stat(entry.path)
            except FileNotFoundError as exc:
                raise UnsupportedEntry(errno.ENOENT, "dangling symbolic link", entry.path) from exc
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    raise UnsupportedEntry(errno.ELOOP, "directory reached twice (symbolic link loop?)", entry.path)
                seen.add(key)
                yield child, st
                yield from visit(child)
            elif stat.S_ISREG(st.st_mode):
                yield child, st
            else:
                raise UnsupportedEntry(errno.EINVAL, "not a regular file or directory", entry.path)

    yield from visit(Path())


def tree_size(src: str | os.PathLike[str]) -> tuple[int, int]:
    """``(number of files, total bytes)`` under ``src``."""
    files = total = 0
    for _, st in walk_tree(src):
        if stat.S_ISREG(st.st_mode):
            files += 1
            total += st.st_size
    return files, total


def copy_tree(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy the tree ``src`` into the existing, empty directory ``dst``, durably.

    Every file is fsync'd after its copy, every directory after its entries,
    ``dst`` last. Symlinks are followed (the copy is self-contained); modes of
    files are kept. The caller fsyncs ``dst``'s parent after renaming it.
    """
    src, dst = Path(src), Path(dst)
    dirs = [dst]
    for rel, st in walk_tree(src):
        target = dst / rel
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(target)
            dirs.append(target)
        else:
            shutil.copyfile(src / rel, target)
            os.chmod(target, stat.S_IMODE(st.st_mode))
            fsync_file(target)
            checkpoint("copy:file")
    for directory in reversed(dirs):  # children before parents
        fsync_dir(directory)
    checkpoint("copy:done")


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a tree (no error when it is already gone) and fsync its parent."""
    path = Path(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(path)
    fsync_dir(path.parent)


def tree_digest(path: str | os.PathLike[str]) -> str:
    """A SHA-256 over the relative paths, kinds and file contents of a tree."""
    digest = hashlib.sha256()
    for rel, st in walk_tree(path):
        if stat.S_ISDIR(st.st_mode):
            digest.update(b"d\0" + os.fsencode(rel.as_posix()) + b"\0")
        else:
            digest.update(b"f\0" + os.fsencode(rel.as_posix()) + b"\0" + str(st.st_size).encode() + b"\0")
            with open(Path(path) / rel, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()
