"""A published version onto local disk, all or nothing: every file downloaded into a temporary directory
beside the target, checked against the manifest (size and sha256), fsynced, then renamed into place in
one step. Killed at any moment, the target either does not exist or is the complete version; the
temporary directory (``.servegate-tmp-*``) is not a version number, so TF Serving never lists it."""

from __future__ import annotations

import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from servegate.model_store.fsutil import checkpoint
from servegate.object_store.connect import call
from servegate.object_store.errors import ManifestMismatch
from servegate.object_store.location import S3Location
from servegate.object_store.records import FileEntry, Manifest
from servegate.object_store.versions import files_prefix, sha256_of

TMP_PREFIX = ".servegate-tmp-"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def download_version(client: Any, location: S3Location, manifest: Manifest, target: Path,
                     *, workers: int = 8) -> Path:
    """``target`` holding exactly the manifest's files; :class:`ManifestMismatch` (nothing placed) when a
    file differs. Checkpoints (see :func:`~servegate.model_store.fsutil.checkpoint`): ``s3-download:file``
    after each file is verified, ``s3-download:verified`` between the whole check and the rename."""
    from boto3.s3.transfer import TransferConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    prefix = files_prefix(location, manifest.model, manifest.version)
    transfer = TransferConfig(max_concurrency=workers)

    def one(entry: FileEntry) -> None:
        local = staging / entry.path
        local.parent.mkdir(parents=True, exist_ok=True)
        call(client, location, f"downloading {entry.path}", "download_file", Bucket=location.bucket,
             Key=prefix + entry.path, Filename=str(local), Config=transfer)
        size, digest = local.stat().st_size, sha256_of(local)
        if (size, digest) != (entry.size, entry.sha256):
            raise ManifestMismatch(
                f"{location.uri}: {entry.path} of version {manifest.version} of {manifest.model!r} is {size} bytes "
                f"sha256 {digest[:12]}..., the manifest says {entry.size} bytes sha256 {entry.sha256[:12]}...; "
                "it was not placed", subject=location.source)
        _fsync(local)
        checkpoint("s3-download:file")

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(manifest.files)))) as pool:
            list(pool.map(one, manifest.files))
        for directory in sorted({p for p in staging.rglob("*") if p.is_dir()} | {staging}, reverse=True):
            _fsync(directory)
        checkpoint("s3-download:verified")
        os.rename(staging, target)  # fails if target exists: a complete copy is never replaced
        _fsync(target.parent)
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
