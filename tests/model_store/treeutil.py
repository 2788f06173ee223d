"""Helpers for the store tests: tree snapshots, version checks, a second filesystem."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from servegate.model_store import fsutil
from servegate.model_store.savedmodel import check_savedmodel


def snapshot_tree(root: str | os.PathLike[str]) -> dict[str, tuple]:
    """Every entry under ``root`` (root itself included): kind, mode, and content hash or link target.

    Two snapshots are equal exactly when the trees are byte-identical (names,
    kinds, permissions, file contents, symlink targets); times are left out.
    A missing root snapshots as ``{}``.
    """
    root = Path(root)
    if not os.path.lexists(root):
        return {}
    snap: dict[str, tuple] = {}

    def entry(path: Path, rel: str) -> None:
        st = os.lstat(path)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            snap[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            snap[rel] = ("dir", mode)
            for child in sorted(os.listdir(path)):
                entry(path / child, f"{rel}/{child}" if rel else child)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            snap[rel] = ("file", mode, st.st_size, digest)
        else:
            snap[rel] = ("other", stat.S_IFMT(st.st_mode))

    entry(root, "")
    return snap


def diff_snapshots(before: dict, after: dict) -> list[str]:
    changes = [f"removed {k}" for k in sorted(set(before) - set(after))]
    changes += [f"added {k}" for k in sorted(set(after) - set(before))]
    changes += [f"changed {k}" for k in sorted(set(before) & set(after)) if before[k] != after[k]]
    return changes


def version_dirs(base: Path) -> dict[int, Path]:
    """Numeric entries of a base path (what TF Serving would see as versions)."""
    if not base.is_dir():
        return {}
    return {int(e): base / e for e in os.listdir(base) if e.isdigit()}


def dot_entries(base: Path) -> list[str]:
    return sorted(e for e in os.listdir(base) if e.startswith(".")) if base.is_dir() else []


def assert_complete_copy(path: Path, source_digest: str) -> None:
    check_savedmodel(path)
    assert fsutil.tree_digest(path) == source_digest, f"{path} differs from its source"


# --------------------------------------------------------------------------- filesystems


def _mount_tmpfs(target: Path, size: str = "256m") -> bool:
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "servegate-test", str(target)],
                            capture_output=True)
    return result.returncode == 0


def umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@contextlib.contextmanager
def other_filesystem(near: Path):
    """A writable directory on another filesystem than ``near``, or None when none can be had.

    A fresh tmpfs mount when we may mount (root), else /dev/shm when it is a
    different device.
    """
    mount_point = Path(tempfile.mkdtemp(prefix="sg-otherfs-", dir=near))
    if _mount_tmpfs(mount_point):
        try:
            yield mount_point
        finally:
            umount(mount_point)
            with contextlib.suppress(OSError):
                mount_point.rmdir()
        return
    mount_point.rmdir()
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(near).st_dev:
        path = Path(tempfile.mkdtemp(prefix="sg-otherfs-", dir=shm))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    yield None


@contextlib.contextmanager
def read_only_mount(target: Path):
    """Mount a tmpfs at ``target``; yields a function that remounts it read-only. None when mounting is denied."""
    if not _mount_tmpfs(target, size="64m"):
        yield None
        return

    def make_read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True, capture_output=True)

    try:
        yield make_read_only
    finally:
        umount(target)
