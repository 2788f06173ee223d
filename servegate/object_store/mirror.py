""":class:`MirroredStore`: the surface of :class:`~servegate.model_store.ModelStore` that the deploy and
the release path use, over a store root in a bucket, with local copies for the canary.

The bucket holds the truth (versions by manifest, production.json by compare-and-swap); local copies
live under ``$SERVEGATE_HOME/s3-cache/BUCKET/PREFIX/NAME/VERSION``, each placed whole by
:func:`~servegate.object_store.download.download_version`. Areas map onto production.json: production
is the stack of served versions, rejected the rejected set, staging every other published version.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from servegate.model_store.errors import StoreError
from servegate.model_store.fsutil import rename_noreplace
from servegate.model_store.layout import PRODUCTION, REJECTED, STAGING
from servegate.model_store.store import DEFAULT_RETENTION
from servegate.model_store.results import StoreStatus
from servegate.object_store import lock, production
from servegate.object_store.download import TMP_PREFIX, download_version
from servegate.object_store.location import S3Location
from servegate.object_store.records import Production
from servegate.object_store.store import ObjectModelStore, ObjectRollback
from servegate.object_store.versions import list_versions

log = logging.getLogger(__name__)

#: The local store's options a store in a bucket applies too; any other is refused by name.
_OBJECT_STORE_OPTIONS = ("lock_timeout", "retention")


def open_model_store(location: Path | S3Location, **options):
    """A local :class:`ModelStore` for a path, a :class:`MirroredStore` for an ``s3://`` root."""
    if isinstance(location, S3Location):
        unknown = sorted(set(options) - set(_OBJECT_STORE_OPTIONS))
        if unknown:
            raise StoreError(f"{', '.join(unknown)}: not an option of a store in a bucket ({location.uri}); "
                             f"it takes {' and '.join(_OBJECT_STORE_OPTIONS)}", subject=unknown[0])
        return MirroredStore(location, **options)
    from servegate.model_store import ModelStore

    return ModelStore(location, **options)


class MirroredStore:
    def __init__(self, location: S3Location, *, lock_timeout: float = 30.0, cache: Path | None = None,
                 retention: int = DEFAULT_RETENTION):
        from servegate.settings import servegate_home

        self.objects = ObjectModelStore.open(location, retention=retention)
        self.location = location
        self.lock_timeout = lock_timeout
        self.cache = cache or servegate_home() / "s3-cache" / location.bucket / (location.prefix or "_")

    @property
    def root(self) -> str:
        return self.location.uri

    def _state(self, name: str) -> Production:
        return production.read_production(self.objects.client, self.location, name)[0]

    def versions(self, name: str, area: str) -> list[int]:
        state = self._state(name)
        if area == PRODUCTION:
            return sorted(state.served)
        if area == REJECTED:
            return sorted(int(v) for v in state.rejected if int(v) not in state.served)
        published = list_versions(self.objects.client, self.location, name, clean=False).published
        return sorted(set(published) - set(state.served) - {int(v) for v in state.rejected})

    def serving_version(self, name: str) -> int | None:
        return self._state(name).serving

    def exists(self, name: str) -> bool:
        return self.objects.status(name, clean=False).exists

    def base_path(self, area: str, name: str) -> str:
        return f"{self.location.uri}/models/{name}"  # one place: areas are states in production.json

    def version_path(self, area: str, name: str, version: int) -> Path:
        """The local copy when ``version`` is in ``area`` (downloaded and verified if missing), else a path
        that does not exist (callers test ``.exists()`` to ask "is it there?")."""
        if version not in self.versions(name, area):
            return self.cache / ".absent" / area / name / str(version)
        local = self.cache / name / str(version)
        if not local.exists():
            manifest = self.objects.manifest(name, version)
            if manifest is None:
                return self.cache / ".absent" / area / name / str(version)
            try:
                download_version(self.objects.client, self.location, manifest, local)
            except FileExistsError:
                pass  # another process placed it meanwhile (whole, like this one would have)
        return local

    def stage(self, name: str, source: Path, *, run_id: str | None = None, detail: dict | None = None) -> int:
        """Upload and publish the next version; keep a local copy for the canary."""
        manifest = self.objects.stage(name, Path(source), run_id=run_id)
        local = self.cache / name / str(manifest.version)
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = local.parent / f"{TMP_PREFIX}{manifest.version}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(source, staging)
        try:
            rename_noreplace(staging, local)
        except FileExistsError:  # a reader on this machine fetched it meanwhile, whole and verified
            shutil.rmtree(staging, ignore_errors=True)
        return manifest.version

    def promote(self, name: str, version: int, *, run_id: str | None = None) -> None:
        self.objects.promote(name, version, run_id=run_id)

    def reject(self, name: str, version: int, reason: str, *, run_id: str | None = None) -> None:
        self.objects.reject(name, version, reason, run_id=run_id)

    def rollback(self, name: str, *, to_version: int | None = None, run_id: str | None = None,
                 reason: str = "rolled back") -> ObjectRollback:
        return self.objects.rollback(name, to_version=to_version, reason=reason, run_id=run_id)

    @contextlib.contextmanager
    def lock(self, name: str, *, operation: str = "") -> Iterator[None]:
        with lock.hold(self.objects.client, self.location, name, operation=operation, timeout=self.lock_timeout):
            yield

    def wait_for_fleet(self, name: str, version: int, deadline_s: float) -> list[str]:
        """Every live node (by heartbeat) serves ``version``; raises naming the ones that do not."""
        from servegate.object_store.fleet import wait_for_fleet

        return wait_for_fleet(self.objects.client, self.location, name, version, deadline_s)

    def recover(self, name: str) -> None:
        """Retire the uploads of dead workers (lease expired); delete what left production and no node holds;
        drop this machine's copies of versions the bucket no longer publishes."""
        listing = list_versions(self.objects.client, self.location, name, clean=True)
        pruned = self.objects.prune(name)
        self._drop_local_copies(name, set(listing.published) - set(pruned.deleted))

    def _drop_local_copies(self, name: str, published: set[int]) -> None:
        """Without this a worker's cache grows by one version per deploy, forever. A version still published
        (served, a rollback target, another deploy's candidate, rejected but not yet deleted) keeps its copy;
        one whose files left the bucket can never be a canary's or a baseline's again. Each copy is renamed
        away first, so no reader ever finds half of one under its number."""
        folder = self.cache / name
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            if not entry.name.isdigit() or int(entry.name) in published:
                continue
            doomed = folder / f"{TMP_PREFIX}gone-{entry.name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(entry, doomed)
            except FileNotFoundError:
                continue  # another deploy on this machine dropped it first
            except OSError as exc:  # a copy kept costs disk, never correctness: the deploy goes on
                log.warning("could not drop the local copy %s: %s", entry, exc)
                continue
            shutil.rmtree(doomed, ignore_errors=True)

    def last_promotion_time(self, name: str) -> datetime | None:
        """When production last changed by a promotion (production.json's history; None: never)."""
        promotions = [entry for entry in self._state(name).history if entry["operation"] == "promote"]
        return datetime.fromisoformat(promotions[-1]["time"]) if promotions else None

    def history(self, name: str) -> list:
        """No stage records: a dead stager's version is retired by its lease, not by its pid."""
        return []

    def status(self, name: str, history_limit: int = 10) -> StoreStatus:
        state = self._state(name)
        areas = {area: self.versions(name, area) for area in (PRODUCTION, STAGING, REJECTED)}
        status = self.objects.status(name, history_limit=0, clean=False)
        return StoreStatus(name, self.root, status.exists,
                           {area: self.base_path(area, name) for area in areas}, areas, state.serving,
                           {int(v): r for v, r in state.rejected.items()}, status.next_version, [])
