"""Steps "stage version" (undo: reject it) and "register in MLflow".

Staging first moves versions that killed deploys left in staging to
``rejected/`` ("abandoned"): a deploy SIGKILLed between stage and
promote/reject cannot clean up after itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

from servegate.deploy import resources
from servegate.deploy.progress import say
from servegate.deploy.record import AttemptRecord
from servegate.errors import ServegateError

log = logging.getLogger("servegate.deploy")


def abandoned_versions(store, name: str) -> list:
    """The stage records of staged versions whose deploy is gone: staged on this host by a process that no longer runs.

    The store's history names the process that staged each version. A live
    process's version (a deploy running beside this one) is never touched, nor
    one staged on another host (its process cannot be seen from here). The
    store's recovery runs first: a stager killed between its rename and its
    history line gets that line then (the store's write-ahead intent), naming it.
    """
    from servegate.runtime.identity import ProcessIdentity

    store.recover(name)
    staged = set(store.versions(name, "staging"))
    stagers = {r.version: r for r in store.history(name) if r.operation == "stage"} if staged else {}
    gone = []
    for version in sorted(staged):
        record = stagers.get(version)
        if record is not None and ProcessIdentity.from_history(record).is_dead():
            gone.append(record)
    return gone


def reject_abandoned(record: AttemptRecord) -> list[int]:
    """Move staged versions of killed deploys to ``rejected/`` ("abandoned"); returns them."""
    release = resources.release(record)
    rejected = []
    for stager in abandoned_versions(release.store, record.name):
        version = stager.version
        reason = (f"abandoned: the deploy that staged it (pid {stager.pid}, MLflow run {stager.run_id}) "
                  "ended without promoting or rejecting it")
        try:
            release.reject(record.name, version, reason, run_id=record.run_id)
        except ServegateError as exc:  # promoted or rejected meanwhile by someone else: fine
            log.info("abandoned version %s of %s: %s", version, record.name, exc)
            continue
        rejected.append(version)
        say(f"stage: version {version} of a killed deploy -> rejected/")
    return rejected


def write_warmup(record: AttemptRecord) -> None:
    """TF Serving's warm-up requests (``assets.extra/tf_serving_warmup_requests``) from reference rows,
    so that the version's first requests after a swap are not slow. A SavedModel's own file is kept."""
    from servegate.serving.warmup import write_warmup_requests

    cfg = resources.config(record)
    if not cfg.warmup.enabled:
        return
    if cfg.warmup.source == "traffic" and _warmup_from_traffic(record, cfg):
        return
    rows = next(iter(resources.reference(record, cfg).batches(cfg.warmup.requests)))
    written = write_warmup_requests(Path(record.savedmodel_dir), rows, model_name=record.name,
                                    count=cfg.warmup.requests)
    if written is not None:
        say(f"stage: a warm-up request per request shape of the reference rows in {written.parent.name}/")


def _warmup_from_traffic(record: AttemptRecord, cfg) -> bool:
    """Warm-up requests from recorded production traffic (``warmup.source: traffic``); False when none
    was recorded yet (a first deploy), so that the reference rows are used instead."""
    from servegate.serving.warmup import write_warmup_from_requests
    from servegate.validation.shadow_logs import load_traffic

    traffic = load_traffic(cfg.traffic.logs, record.name, cfg.signature_name, cfg.warmup.requests,
                           cfg.traffic.max_age_hours)
    # Predict requests only: they are on the signature validated; a :classify or :regress request names
    # a signature of its own.
    requests = [r.record.predict_log.request for r in traffic.requests if r.kind == "predict"]
    if not requests:
        say(f"stage: no recorded predict request in {cfg.traffic.logs}: warm-up requests from the reference "
            "rows instead")
        return False
    written = write_warmup_from_requests(Path(record.savedmodel_dir), requests, model_name=record.name)
    if written is not None:
        say(f"stage: a warm-up request per request shape of {len(requests)} recorded requests in "
            f"{written.parent.name}/")
    return True


def stage_version(record: AttemptRecord) -> AttemptRecord:
    """Copy the export (with its warm-up requests) into the store as the next version (``staging/<name>/<v>``)."""
    write_warmup(record)
    reject_abandoned(record)
    store = resources.store(record)
    from servegate.deploy.unchanged import MODEL_DIGEST

    detail = {MODEL_DIGEST: record.model_digest} if record.model_digest else None
    version = store.stage(record.name, record.savedmodel_dir, run_id=record.run_id, detail=detail)
    say(f"stage: version {version} in {store.base_path('staging', record.name)}")
    return record.but(version=version)


def reject_staged(record: AttemptRecord, reason: str) -> AttemptRecord:
    """Undo of "stage version": the staged version to ``rejected/`` with ``reason`` (no-op when not staged)."""
    store = resources.store(record)
    if record.version is None or not store.version_path("staging", record.name, record.version).exists():
        return record
    resources.release(record).reject(record.name, record.version, reason, run_id=record.run_id)
    say(f"reject: version {record.version} -> rejected/ ({reason.splitlines()[0]})")
    return record


def register_version(record: AttemptRecord) -> AttemptRecord:
    """A registry model version mirroring the staged version (alias ``challenger``)."""
    store = resources.store(record)
    registered = resources.tracker(record.request.tracking_uri).register_version(
        record.run_id, record.name, store.version_path("staging", record.name, record.version), record.version
    )
    return record.but(registry_version=registered.registry_version)
