"""A published version onto local disk, all or nothing: every file downloaded into a temporary directory
beside the target, checked against the manifest (size and sha256), fsynced, then renamed into place in
one step. Killed at any moment, the target either does not exist or is the complete version; the
temporary directory (``.servegate-tmp-*``) is not a version number, so TF Serving never lists it.

Each file is hashed as its bytes arrive rather than read back from disk: s3transfer hands them to a
writer that is not seekable (:class:`HashingWriter`), so it writes the ranged parts of a large file
strictly in order and the running sha256 is the file's. One transfer manager serves the whole version
(``workers`` requests at once in all, not per file), and one listing of the version's prefix gives it
every object's size and ETag, so no file costs a HEAD request before its GET."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from servegate.model_store.fsutil import checkpoint, fsync_dir, rename_noreplace
from servegate.object_store.connect import translate
from servegate.object_store.errors import ManifestMismatch
from servegate.object_store.location import S3Location
from servegate.object_store.records import FileEntry, Manifest
from servegate.object_store.versions import files_prefix, list_objects

TMP_PREFIX = ".servegate-tmp-"


class HashingWriter:
    """Writes to ``handle`` and keeps the sha256 and count of every byte written, in order.

    ``seekable()`` is False and there is no ``seek``/``tell`` on purpose: a seekable target gets each
    ranged part written at its offset as it arrives (out of order, which a running hash cannot follow);
    this one gets the parts queued and written strictly in order (s3transfer's ``DeferQueue``)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.size = 0

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self._handle.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _listed(client: Any, location: S3Location, prefix: str) -> dict[str, tuple[int, str]]:
    """Size and ETag of every object under ``prefix``, from one listing (a page per 1000 keys)."""
    return {item["Key"]: (item["Size"], item["ETag"]) for item in list_objects(client, location, prefix)}


def _known_object(size: int, etag: str) -> Any:
    """A subscriber that tells s3transfer the object's size and ETag, which it would otherwise HEAD for.
    The ETag also goes as ``If-Match`` on each ranged GET: an object replaced meanwhile fails the GET."""
    from s3transfer.subscribers import BaseSubscriber

    class KnownObject(BaseSubscriber):
        def on_queued(self, future: Any, **kwargs: Any) -> None:
            future.meta.provide_transfer_size(size)
            future.meta.provide_object_etag(etag)

    return KnownObject()


def _download_file(manager: Any, client: Any, location: S3Location, manifest: Manifest, key: str,
                   listed: tuple[int, str] | None, entry: FileEntry, local: Path) -> None:
    """One file into ``local``: hashed as it arrives, compared with the manifest, fsynced."""
    from botocore.exceptions import BotoCoreError, ClientError
    from s3transfer.exceptions import RetriesExceededError

    # a key the listing lacks is HEADed as usual, and its absence reported the same way
    subscribers = [_known_object(*listed)] if listed is not None else None
    with local.open("wb") as handle:
        writer = HashingWriter(handle)
        try:
            manager.download(location.bucket, key, writer, subscribers=subscribers).result()
        except (ClientError, BotoCoreError, RetriesExceededError) as exc:
            # s3transfer gives up on a body that keeps breaking off with the read error as last_exception
            cause = getattr(exc, "last_exception", None) or exc
            raise translate(cause, location, client, f"downloading {entry.path}") from exc
        size, digest = writer.size, writer.hexdigest()
        if (size, digest) != (entry.size, entry.sha256):
            raise ManifestMismatch(
                f"{location.uri}: {entry.path} of version {manifest.version} of {manifest.model!r} is {size} bytes "
                f"sha256 {digest[:12]}..., the manifest says {entry.size} bytes sha256 {entry.sha256[:12]}...; "
                "it was not placed", subject=location.source)
        handle.flush()
        os.fsync(handle.fileno())


def download_version(client: Any, location: S3Location, manifest: Manifest, target: Path,
                     *, workers: int = 8, part_size: int = 8 << 20) -> Path:
    """``target`` holding exactly the manifest's files; :class:`ManifestMismatch` (nothing placed) when a
    file differs. ``workers`` GET requests at once; a file of ``part_size`` bytes or more is fetched as
    ranged parts of that size (boto3's defaults). Checkpoints (see
    :func:`~servegate.model_store.fsutil.checkpoint`): ``s3-download:file`` after each file is verified,
    ``s3-download:verified`` between the whole check and the rename."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    prefix = files_prefix(location, manifest.model, manifest.version)

    try:
        listed = _listed(client, location, prefix)
        with create_transfer_manager(client, TransferConfig(
                max_concurrency=workers, multipart_threshold=part_size, multipart_chunksize=part_size)) as manager:

            def one(entry: FileEntry) -> None:
                local = staging / entry.path
                local.parent.mkdir(parents=True, exist_ok=True)
                _download_file(manager, client, location, manifest, prefix + entry.path,
                               listed.get(prefix + entry.path), entry, local)
                checkpoint("s3-download:file")

            # the largest first: its ranged parts start at once and the small files fill the gaps
            ordered = sorted(manifest.files, key=lambda entry: -entry.size)
            with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ordered)))) as pool:
                list(pool.map(one, ordered))
        for directory in sorted({p for p in staging.rglob("*") if p.is_dir()} | {staging}, reverse=True):
            fsync_dir(directory)
        checkpoint("s3-download:verified")
        # never over a copy another process placed meanwhile: a plain rename onto a non-empty directory
        # fails with ENOTEMPTY, which callers could not tell from a real error; this fails FileExistsError
        rename_noreplace(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_leftovers(directory: Path) -> list[str]:
    """Temporary directories a killed download left (never versions); returns their names."""
    gone = []
    for entry in directory.glob(TMP_PREFIX + "*") if directory.is_dir() else []:
        shutil.rmtree(entry, ignore_errors=True)
        gone.append(entry.name)
    return gone
