"""The MLflow model registry as a mirror of the store: one registry version per staged version.

**Model bytes are stored once, in the store.** A registry version does not
copy the SavedModel into MLflow's artifacts (copies would be never pruned:
three ResNet50 deploys would leave 560 MB of artifacts beside a 548 MB store). Its source is
the run's ``savedmodel/`` artifact folder, which holds ``location.json``: the
model, the store version and where its bytes live. The registry version's tag
``store_path`` names the version's folder in the store and follows it when
:mod:`servegate.release` moves it (staging -> production -> rejected/).

Why not a source that points straight into the store: a version's folder
moves between areas, and a registry source cannot be changed afterwards; and
an MLflow tracking server refuses a local ``file://`` source outside the run's
artifact folder. The run's folder is valid on every backend and never stale.

Tags on each registry version: ``serving_version`` (the store version),
``verdict`` (``pending``, ``passed``, ``failed``, ``rejected``, ``rolled_back``,
``cancelled``, ``error``), ``reasons`` (one per line), ``store_path``. Aliases: ``champion``
names the version production serves, ``challenger`` the latest candidate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from servegate.errors import TrackingError
from servegate.tracking.conventions import clip
from servegate.tracking.stores import call

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIAS_ATTEMPTS = 4
SAVEDMODEL_ARTIFACT_PATH = "savedmodel"
LOCATION_FILE = "location.json"


@dataclass(frozen=True)
class RegisteredVersion:
    """A registry model version that mirrors one store version."""

    model_name: str
    registry_version: str
    serving_version: int
    source: str
    run_id: str


def location_record(model_name: str, serving_version: int, savedmodel_dir: Path | str) -> dict[str, Any]:
    return {
        "model": model_name,
        "serving_version": int(serving_version),
        "store_path_at_registration": str(savedmodel_dir),
        "note": "servegate keeps the SavedModel's bytes once, in its model store; the registry version's tag "
                f"store_path says where they are now (`servegate status --name {model_name}` shows the areas)",
    }


def ensure_registered_model(client: Any, model_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException:
        try:
            client.create_registered_model(
                model_name, description=f"servegate model {model_name!r}: one version per staged version")
        except MlflowException:
            client.get_registered_model(model_name)  # created concurrently by another run: fine


def register(client: Any, uri: str, run_id: str, model_name: str, savedmodel_dir: Path | str,
             serving_version: int) -> RegisteredVersion:
    """A registry version for the staged ``savedmodel_dir`` (no bytes copied); ``challenger`` moves to it."""
    record = json.dumps(location_record(model_name, serving_version, savedmodel_dir), indent=2)
    call(uri, "log text", client.log_text, run_id, record, f"{SAVEDMODEL_ARTIFACT_PATH}/{LOCATION_FILE}")
    source = f"{client.get_run(run_id).info.artifact_uri}/{SAVEDMODEL_ARTIFACT_PATH}"
    try:
        ensure_registered_model(client, model_name)
        mv = client.create_model_version(
            model_name, source, run_id=run_id,
            tags={"serving_version": str(serving_version), "verdict": "pending", "store_path": str(savedmodel_dir)},
            description=f"store version {serving_version}; the SavedModel stays in the servegate store (tag "
                        "store_path)",
        )
        set_alias(client, model_name, CHALLENGER, mv.version)
    except Exception as exc:
        raise TrackingError(f"MLflow registry: registering {model_name!r} version {serving_version}: {exc}") from exc
    return RegisteredVersion(model_name, str(mv.version), int(serving_version), source, run_id)


def find_version(client: Any, uri: str, model_name: str, serving_version: int):
    """The newest registry version tagged with ``serving_version``, or None (also when the model is unknown)."""
    try:
        found = client.search_model_versions(f"name='{model_name}' and tag.serving_version='{int(serving_version)}'")
    except Exception as exc:
        raise TrackingError(f"MLflow registry search for {model_name!r} v{serving_version} at {uri}: {exc}") from exc
    return max(found, key=lambda mv: int(mv.version)) if found else None


def set_version_tags(client: Any, uri: str, model_name: str, registry_version: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        call(uri, "tag model version", client.set_model_version_tag, model_name, registry_version, key, value)


def verdict_tags(verdict: str, reasons: Iterable[str] = ()) -> dict[str, str]:
    """``verdict`` and ``reasons`` (one per line; ``-`` when there are none)."""
    return {"verdict": verdict, "reasons": clip("\n".join(reasons)) or "-"}


def set_champion(client: Any, uri: str, model_name: str, serving_version: int | None) -> str | None:
    """Point ``champion`` at the registry version of ``serving_version``; None removes it.

    Returns the registry version now named champion, or None when production
    serves nothing or a version that was never registered (then the alias is
    removed: a wrong champion is worse than none).
    """
    from mlflow.exceptions import MlflowException

    mv = None if serving_version is None else find_version(client, uri, model_name, serving_version)
    try:
        if mv is None:
            try:
                client.delete_registered_model_alias(model_name, CHAMPION)
            except MlflowException:
                pass  # no alias (or no registered model): nothing to remove
            return None
        set_alias(client, model_name, CHAMPION, mv.version)
    except MlflowException as exc:
        raise TrackingError(f"MLflow registry: alias {CHAMPION} for {model_name!r} at {uri}: {exc}") from exc
    return str(mv.version)


def set_alias(client: Any, model_name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` at ``version``; a write that lost a race for the alias's row is tried again.

    MLflow's SQL store sets an alias by reading its row, then inserting it or
    updating it. Two deploys of one model that set the same alias at once (the
    challenger at registration) can both read "no row" and both insert; the
    database refuses the second insert on the alias's unique key. Tried again,
    the row is there and the write is an update. Any other error is raised.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_incrementing

    for attempt in Retrying(stop=stop_after_attempt(ALIAS_ATTEMPTS), wait=wait_incrementing(0.05, 0.05),
                            retry=retry_if_exception(lost_unique_race), reraise=True):
        with attempt:
            client.set_registered_model_alias(model_name, alias, version)


def lost_unique_race(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing a duplicate on a unique key: SQLAlchemy's
    ``IntegrityError`` in the cause chain (a SQL store in this process), or its text in the
    message (an MLflow tracking server answers with the error's text)."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "IntegrityError":  # SQLAlchemy's, or a DB-API driver's
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "IntegrityError" in text or "UNIQUE constraint failed" in text or "duplicate key value" in text


def alias_version(client: Any, model_name: str, alias: str):
    """The registry version behind ``alias``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
