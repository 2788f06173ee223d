"""Steps "export model", "check reference data" and "compute golden predictions".

None of them changes anything outside the attempt's work dir, so the CLI can
run them before it opens any run (bad input then costs no Prefect or MLflow
run); the flow runs them again and reuses an export already in the work dir
when its source is unchanged (same path, size and modification time).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from servegate.attempt import resources
from servegate.attempt.progress import say
from servegate.attempt.record import AttemptRecord

EXPORT_STAMP = "export.json"


def _fingerprint(source: Path) -> dict:
    stat = source.stat()
    return {"source": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _reusable_export(work: Path, source: Path) -> dict | None:
    """The stamp of an export of ``source`` already in ``work``, or None."""
    stamp = work / EXPORT_STAMP
    if not (stamp.is_file() and (work / "savedmodel").is_dir()):
        return None
    data = json.loads(stamp.read_text())
    return data if data.get("fingerprint") == _fingerprint(source) else None


def export_model(record: AttemptRecord) -> AttemptRecord:
    """Write the SavedModel (``serving_default`` signature) into the work dir; record its signature."""
    from servegate import export

    request, work = record.request, record.work_path
    source = Path(request.model_path)
    if request.serving == "process":
        # The canary's bundled server imports TensorFlow meanwhile (a no-op when the CLI started it).
        from servegate.runtime import warm

        warm.prewarm(record.name)
    stamp = _reusable_export(work, source)
    if stamp is None:
        shutil.rmtree(work / "savedmodel", ignore_errors=True)
        options = {}
        if request.custom_objects:
            options["custom_modules"] = request.custom_objects
        if request.unsafe_deserialization:
            options["unsafe_deserialization"] = True
        say(f"export: {source}")
        result = export.export_model(source, work / "savedmodel", **options)
        stamp = {"fingerprint": _fingerprint(source), "signature": result.signature.to_dict()}
        (work / EXPORT_STAMP).write_text(json.dumps(stamp))
    else:
        say(f"export: {source} (reusing the export checked before the run)")
    return record.but(savedmodel_dir=str(work / "savedmodel"), signature=stamp["signature"])


def check_reference(record: AttemptRecord) -> AttemptRecord:
    """The reference rows and the config against the model's signature: named errors for what doesn't fit."""
    from servegate.validation import check_config_against_signature

    cfg = resources.config(record)
    check_config_against_signature(cfg, resources.signature(record))
    reference = resources.reference(record, cfg)
    say(f"reference: {reference.n_rows} rows from {record.request.reference}")
    if cfg.warmup.enabled and cfg.warmup.source == "traffic" and not cfg.traffic.logs:
        from servegate.errors import ConfigError

        raise ConfigError(f"validation config {cfg.source}: field 'warmup.source' is 'traffic' but no recorded "
                          "traffic is given (expected traffic.logs in the config, or --traffic)")
    if cfg.traffic.logs:
        _check_traffic(record, cfg)
    return record.but(reference_rows=reference.n_rows)


def _check_traffic(record: AttemptRecord, cfg) -> None:
    """Recorded traffic of another model or signature is bad input: refused here, before any run opens."""
    from servegate.validation.shadow_logs import load_traffic

    traffic = load_traffic(cfg.traffic.logs, record.request.name, cfg.signature_name, cfg.traffic.max_requests,
                           cfg.traffic.max_age_hours)
    say(f"traffic: {len(traffic.requests)} recorded requests from {len(traffic.files)} files ({cfg.traffic.logs})")


def compute_golden(record: AttemptRecord) -> AttemptRecord:
    """The exported model's in-process predictions on every reference row (parity's expectation)."""
    from servegate import export

    cfg = resources.config(record)
    batches = resources.reference(record, cfg).batches(max(cfg.batch_size, 1024))
    golden = export.golden_predictions(record.savedmodel_dir, batches)
    path = record.work_path / "golden.npz"
    np.savez(path, **golden)
    return record.but(golden_path=str(path))
