"""Steps "export model", "check reference data" and "compute golden predictions".

None of them changes anything outside the attempt's work dir, so the CLI can
run them before it opens any run (bad input then costs no Prefect or MLflow
run); the flow runs them again and reuses an export (and golden predictions)
already in the work dir when the sources are unchanged (same path, size and
modification time).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from servegate.deploy import resources
from servegate.deploy.progress import say
from servegate.deploy.record import AttemptRecord

EXPORT_STAMP = "export.json"
GOLDEN_STAMP = "golden.json"


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
        from servegate.deploy.unchanged import model_digest

        stamp = {"fingerprint": _fingerprint(source), "signature": result.signature.to_dict(),
                 "model_digest": model_digest(source)}
        (work / EXPORT_STAMP).write_text(json.dumps(stamp))
    else:
        say(f"export: {source} (reusing the export checked before the run)")
    return record.but(savedmodel_dir=str(work / "savedmodel"), signature=stamp["signature"],
                      model_digest=stamp.get("model_digest"))


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


def _golden_stamp(record: AttemptRecord) -> dict:
    """What the golden predictions were computed from: the export's source and the reference file."""
    exported = record.work_path / EXPORT_STAMP
    source = json.loads(exported.read_text()).get("fingerprint") if exported.is_file() else None
    return {"export": source, "reference": _fingerprint(Path(record.request.reference))}


def _check_traffic(record: AttemptRecord, cfg) -> None:
    """Recorded traffic of another model or signature is bad input: refused here, before any run opens."""
    from servegate.validation.shadow_logs import load_traffic

    traffic = load_traffic(cfg.traffic.logs, record.request.name, cfg.signature_name, cfg.traffic.max_requests,
                           cfg.traffic.max_age_hours)
    say(f"traffic: {len(traffic.requests)} recorded requests from {len(traffic.files)} files ({cfg.traffic.logs})")


def compute_golden(record: AttemptRecord) -> AttemptRecord:
    """The exported model's in-process predictions on every reference row (parity's expectation).

    The same answers decide the task of an output whose task depends on them, so a quality
    threshold of the other task is refused here, before anything is staged. Predictions already
    in the work dir for the same export and reference are reused (the CLI computed them first).
    """
    from servegate.validation.outputs import check_thresholds_with_answers

    cfg = resources.config(record)
    reference = resources.reference(record, cfg)
    path, stamp_path = record.work_path / "golden.npz", record.work_path / GOLDEN_STAMP
    stamp = _golden_stamp(record)
    if path.is_file() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        say("golden predictions: reusing those computed before the run")
        with np.load(path) as data:
            golden = {name: data[name] for name in data.files}
    else:
        from servegate import export

        golden = export.golden_predictions(record.savedmodel_dir, reference.batches(max(cfg.batch_size, 1024)))
        np.savez(path, **golden)
        stamp_path.write_text(json.dumps(stamp))
    check_thresholds_with_answers(cfg, reference, golden)
    return record.but(golden_path=str(path))
