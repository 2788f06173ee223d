"""Refuse store locations that cannot be made crash-safe: object stores and FUSE mounts of them.

The store's promise (no half-written version is ever visible to TensorFlow
Serving, no number handed out twice) rests on two things a POSIX filesystem
gives and an object store does not: ``rename`` of a directory as one atomic
step, and ``flock`` between the processes that share the store. An ``s3://``
URI is not a path at all (``Path("s3://b/x")`` would quietly become a local
folder named ``s3:``), and a FUSE mount of a bucket (s3fs, goofys, gcsfuse,
rclone, mountpoint-s3, blobfuse...) turns a directory rename into a copy of
every object followed by deletes, visible half-done to a watching server.

:func:`check_store_location` is called by :class:`~servegate.model_store.ModelStore`
before anything touches the disk. The mount a path lives on is read from
``/proc/self/mountinfo`` (see proc(5)); systems without it are not checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from servegate.model_store.errors import StoreError

MOUNTINFO = Path("/proc/self/mountinfo")

#: ``scheme://`` at the start of a location: a URI, not a path.
_URI_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
#: Schemes of object stores (fsspec's names, and the clouds' own).
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "az", "abfs", "abfss", "adl", "wasb", "wasbs",
                                  "oss", "cos", "obs", "r2", "b2", "swift", "minio"})
#: FUSE file systems that present a bucket as files: no atomic directory rename, no shared flock.
#: (POSIX file systems that merely keep their blocks in a bucket, such as JuiceFS or S3QL, are not here.)
OBJECT_STORE_FUSE = frozenset({"s3fs", "goofys", "gcsfuse", "rclone", "mountpoint-s3", "geesefs", "blobfuse",
                               "blobfuse2", "ossfs", "cosfs", "obsfs", "yas3fs", "riofs", "s3backer-fuse"})

_INSTEAD = ("Use a POSIX filesystem every writer mounts: a local disk, a Docker volume or bind mount on one host, "
            "or NFSv4 (or another filesystem with atomic rename and flock) shared by several hosts; "
            "or an s3:// bucket on a store with conditional writes (GCS through its S3 API too); "
            "see docs/scaling.md.")


class UnsafeStoreLocation(StoreError):
    """A store root or area that lives on an object store: refused before anything is written."""


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: where it is mounted, its type and its source."""

    mount_point: str
    fs_type: str
    source: str

    @property
    def object_store(self) -> str | None:
        """The name of the object-store FUSE program behind this mount, or None."""
        kind = self.fs_type.removeprefix("fuse.") if self.fs_type.startswith("fuse.") else None
        if kind in OBJECT_STORE_FUSE:
            return kind
        # Some FUSE programs mount with the generic type "fuse" (or "fuseblk") and name themselves as the source.
        if self.fs_type in ("fuse", "fuseblk"):
            program = self.source.split(":", 1)[0].rsplit("/", 1)[-1]
            if program in OBJECT_STORE_FUSE:
                return program
        return None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a mountinfo text, in its order (later lines stack over earlier ones)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue  # not a mountinfo line
        sep = fields.index("-", 6)
        if len(fields) < sep + 3 or len(fields) < 5:
            continue
        mounts.append(Mount(_unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2])))
    return mounts


def _resolved(path: Path) -> Path:
    """``path`` absolute with the symlinks of its existing part resolved (a store root may not exist yet)."""
    path = Path(os.path.abspath(path))
    missing: list[str] = []
    while not path.exists() and path != path.parent:
        missing.insert(0, path.name)
        path = path.parent
    return path.resolve().joinpath(*missing)


def mount_of(path: str | os.PathLike[str], mounts: Iterable[Mount]) -> Mount | None:
    """The mount ``path`` lives on: the longest mount point containing it (the last one listed wins)."""
    target = _resolved(Path(path))
    best: Mount | None = None
    for mount in mounts:
        point = Path(mount.mount_point)
        if (target == point or point in target.parents) and (
                best is None or len(point.parts) >= len(Path(best.mount_point).parts)):
            best = mount
    return best


def read_mounts(mountinfo: Path) -> list[Mount]:
    try:
        return parse_mountinfo(mountinfo.read_text())
    except OSError:
        return []  # no /proc (not Linux, or hidden): nothing to check against


def _mangled_uri(location: str | os.PathLike[str]) -> bool:
    """A URI that went through ``Path()`` (``s3://b/m`` -> ``s3:/b/m``, as a command-line option does):
    a relative path whose first part is ``<scheme>:``."""
    if isinstance(location, str) or Path(location).is_absolute():
        return None
    parts = Path(location).parts
    return bool(parts) and _URI_RE.match(parts[0] + "//") is not None


def check_location(what: str, location: str | os.PathLike[str], mounts: list[Mount]) -> None:
    """Raise :class:`UnsafeStoreLocation` when ``location`` (``what``: "store root", "production area") is
    an object-store URI, another URI, or a path on an object-store FUSE mount."""
    text = os.fspath(location)
    uri = _URI_RE.match(text)
    if uri is None and _mangled_uri(location):
        parts = Path(location).parts
        text = parts[0] + "//" + "/".join(parts[1:])  # the URI as the user wrote it
        uri = _URI_RE.match(text)
    if uri:
        scheme = uri["scheme"].lower()
        if scheme in OBJECT_STORE_SCHEMES:
            raise UnsafeStoreLocation(
                f"{what} {text!r} is an object store ({scheme}://): object stores have no atomic rename, so a "
                f"version could be seen half-written and a promotion could not be undone safely. {_INSTEAD}",
            subject=text)
        raise UnsafeStoreLocation(f"{what} {text!r} is a URI ({scheme}://); expected a directory path. {_INSTEAD}",
                                  subject=text)
    mount = mount_of(text, mounts)
    kind = mount.object_store if mount else None
    if mount is not None and kind is not None:
        raise UnsafeStoreLocation(
            f"{what} {text!r} is on {mount.mount_point!r}, a {kind} mount of an object store "
            f"(filesystem type {mount.fs_type!r}, source {mount.source!r}): it has no atomic rename, so a "
            f"version could be seen half-written and a promotion could not be undone safely. {_INSTEAD}",
            subject=text)


def check_store_location(root: str | os.PathLike[str], areas: Mapping[str, str | os.PathLike[str]] | None = None,
                         *, mountinfo: Path = MOUNTINFO) -> None:
    """Refuse a store whose root or any area override lives on an object store (before anything is written)."""
    mounts = read_mounts(mountinfo)
    check_location("store root", root, mounts)
    for area, location in (areas or {}).items():
        check_location(f"{area} area", location, mounts)
