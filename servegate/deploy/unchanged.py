"""A re-run of a deploy whose model production already serves: recognised, and nothing created.

A CI job re-run (same commit, same model file) would otherwise stage a new
version of identical content, and the store's retention would retire a real
older version to make room. Exports of one Keras file are not byte-identical
(TensorFlow writes fresh ids into ``saved_model.pb`` and the variables), so the
comparison is on the *source*: the digest of the file (or SavedModel
directory) given to ``--model``, kept in the stage history line of the version
it became (``detail["model_digest"]``). When production's serving version was
staged from a source with the same digest, ``servegate deploy`` answers
``unchanged`` (exit 0) without opening any run; ``--force-new-version`` deploys
it as a new version anyway.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from servegate.deploy.record import DeployOutcome, DeployRequest
from servegate.deploy.verdict import Verdict

#: the stage history line's detail field holding the source's digest
MODEL_DIGEST = "model_digest"
_CHUNK = 1 << 20


def model_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a model file's bytes; ``tree-sha256:<hex>`` of a SavedModel directory's tree."""
    path = Path(path)
    if path.is_dir():
        from servegate.model_store import fsutil

        return "tree-sha256:" + fsutil.tree_digest(path)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def serving_model_digest(store, name: str) -> tuple[int | None, str | None]:
    """(the version production serves, the digest its source had when it was staged; None when unknown)."""
    serving = store.serving_version(name)
    if serving is None:
        return None, None
    staged = [r for r in store.history(name) if r.operation == "stage" and r.version == serving]
    return serving, (staged[-1].detail.get(MODEL_DIGEST) if staged else None)


def already_serving(request: DeployRequest) -> int | None:
    """The version production serves when it was staged from this very model (same digest), else None."""
    from servegate.deploy import resources

    store = resources.store(request)
    if not store.exists(request.name):
        return None
    serving, recorded = serving_model_digest(store, request.name)
    if serving is None or recorded is None:
        return None
    return serving if recorded == model_digest(request.model_path) else None


def unchanged_outcome(request: DeployRequest, version: int) -> DeployOutcome:
    """The outcome of a re-run: production already serves this model as ``version``; nothing created."""
    return DeployOutcome(model_name=request.name, verdict=Verdict.UNCHANGED.value, version=version,
                         production_version=version, previous_production_version=version,
                         mlflow_tracking_uri=request.tracking_uri)
