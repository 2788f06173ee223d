"""What steps build from a record's plain values: the store, the tracker, the config, the reference.

The store and the tracker are cached per process and location (opening
MLflow's store costs about a second); the config and the reference are read
again by each step that needs them, so a step depends on nothing but its record.
"""

from __future__ import annotations

import functools
from typing import Any

from servegate.deploy.record import AttemptRecord, DeployRequest


def store(of: AttemptRecord | DeployRequest):
    """The store a record's (or a request's) ``store_root`` names."""
    request = of.request if isinstance(of, AttemptRecord) else of
    return _store_at(request.store_root)


@functools.lru_cache(maxsize=8)
def _store_at(root: str):
    from servegate.object_store.mirror import open_model_store
    from servegate.settings import resolve_store_root

    return open_model_store(resolve_store_root(root, "store", object_store=True))  # a path or s3://


_helpers: dict[str | None, Any] = {}


def start_tracker_helper(uri: str | None) -> None:
    """Start the tracker for ``uri`` in a helper process (:mod:`servegate.tracking.helper`): MLflow
    imports on another core while this process works; :func:`open_tracker_soon` opens the store."""
    from servegate.tracking.helper import TrackerHelper

    if uri not in _helpers:
        _helpers[uri] = TrackerHelper.launch(uri)


def open_tracker_soon(uri: str | None) -> None:
    """The helper (when started) opens the store now, while this process goes on; no-op without one."""
    helper = _helpers.get(uri)
    if helper is not None:
        helper.open_soon()


def tracks_in_helper(uri: str | None) -> bool:
    """Whether MLflow for ``uri`` runs in a helper process (so never imports in this one)."""
    return uri in _helpers


def tracker(uri: str | None):
    """The tracker for ``uri``: the helper's when one was started, else one in this process."""
    helper = _helpers.get(uri)
    return helper if helper is not None else _tracker_at(uri)


@functools.lru_cache(maxsize=8)
def _tracker_at(uri: str | None):
    from servegate.tracking import Tracker

    return Tracker(uri)


def release(record: AttemptRecord):
    """The one release path (store + MLflow) for this attempt's model. ``announce=False``: the deploy
    emits its verdict's event itself (servegate.flows.events.emit_deploy_outcome), undo included."""
    from servegate.release import Release

    return Release(store=store(record), tracker=tracker(record.request.tracking_uri),
                   announce=False)


def config(record: AttemptRecord):
    from servegate.validation import load_config

    cfg = load_config(record.request.config)
    if record.request.traffic:  # --traffic wins over the config's traffic.logs
        cfg = cfg.model_copy(update={"traffic": cfg.traffic.model_copy(update={"logs": record.request.traffic})})
    return cfg


def signature(record: AttemptRecord):
    from servegate.export import ModelSignature

    return ModelSignature.from_dict(record.signature)


def reference(record: AttemptRecord, cfg: Any = None):
    """The reference rows, checked against the exported signature."""
    from servegate.validation import load_reference

    return load_reference(record.request.reference, signature(record), cfg or config(record))


def golden(record: AttemptRecord):
    """The exported model's in-process predictions, one array per output (None before the golden step)."""
    if not record.golden_path:
        return None
    import numpy as np

    with np.load(record.golden_path) as data:
        return {name: data[name] for name in data.files}
