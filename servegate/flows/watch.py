"""``deploy_newest_export``: the scheduled deployment's flow.

Looks into a watched folder for exported models (``*.keras``, ``*.h5``, or
SavedModel directories), takes the newest, and deploys it with
``deploy_model`` (as a subflow) when it is newer than the version production
serves — "newer" meaning modified after production's last promotion, from the
store's history. Nothing to do is a Completed run that says so.

The reference data for ``<stem>.keras`` is ``<stem>-reference.parquet`` beside
it (the demo's training flow writes that pair), unless ``reference`` is given.

The store is a directory or ``s3://BUCKET/PREFIX`` (``store``, else ``SERVEGATE_STORE``): the
deploy goes into it either way. The store is opened first (for a bucket: every up-front check), so a
store that cannot be used fails every run, with an exported model or without.

The watched folder defaults to :func:`servegate.settings.default_exports_dir`
(``$SERVEGATE_HOME/exports``, resolved where the flow runs), created when
missing so that a scheduled run on a fresh machine completes with "nothing to
do"; a folder named explicitly must exist. A deploy that ends with a verdict
(rejected, rolled back) ends this run the same way: Failed, same state name and
message, without raising (see servegate.flows.engine).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.states import Failed

from servegate.errors import ConfigError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def watched_folder(watch_dir: str | None) -> Path:
    """``watch_dir``, or the default exports folder (created: it is servegate's own)."""
    if watch_dir:
        return Path(watch_dir).expanduser()
    from servegate.settings import default_exports_dir

    folder = default_exports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def newest_export(watch_dir: Path) -> Path | None:
    """The most recently modified model file or SavedModel dir in ``watch_dir`` (not recursive)."""
    if not watch_dir.is_dir():
        raise ConfigError(f"deploy-newest-export: watch_dir {watch_dir}: no such directory; expected a folder of "
                          "exported models (leave watch_dir unset for $SERVEGATE_HOME/exports)")
    candidates = [
        p for p in watch_dir.iterdir()
        if not p.name.startswith(".")
        and ((p.is_file() and p.suffix.lower() in MODEL_SUFFIXES) or (p.is_dir() and (p / "saved_model.pb").is_file()))
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def last_promotion_time(store, name: str) -> datetime | None:
    """When production last changed by a promotion, from the store's history (None: never); for a store
    in a bucket, from production.json's history."""
    from servegate.object_store.mirror import MirroredStore

    if isinstance(store, MirroredStore):
        return store.last_promotion_time(name)
    for record in reversed(store.history(name)):
        if record.to_area == "production" and record.from_area == "staging":
            return datetime.fromisoformat(record.time.replace("Z", "+00:00"))
    return None


def reference_for(model: Path, reference: str | None) -> Path:
    if reference:
        return Path(reference)
    stem = model.name[: -len(model.suffix)] if model.suffix else model.name
    return model.parent / f"{stem}-reference.parquet"


@flow(name="deploy-newest-export", flow_run_name="watch-{name}")
def deploy_newest_export(
    name: str,
    watch_dir: str | None = None,
    reference: str | None = None,
    store: str | None = None,
    serving: str = "process",
    config: str | None = None,
    production_url: str | None = None,
    tracking_uri: str | None = None,
):
    from servegate.deploy.record import DeployRequest
    from servegate.flows.deploy import deploy_model
    from servegate.object_store.mirror import open_model_store
    from servegate.settings import resolve_store_root

    logger = get_run_logger()
    # first: a store that cannot be used fails every scheduled run, exported model or not
    model_store = open_model_store(resolve_store_root(store, "store", object_store=True))  # a path or s3://
    folder = watched_folder(watch_dir)
    newest = newest_export(folder)
    if newest is None:
        logger.info("no exported model in %s", folder)
        return {"deployed": False, "reason": "no exported model"}
    promoted_at = last_promotion_time(model_store, name)
    modified = datetime.fromtimestamp(newest.stat().st_mtime, tz=timezone.utc)
    if promoted_at is not None and modified <= promoted_at:
        logger.info("%s (modified %s) is not newer than production's last promotion (%s)", newest, modified, promoted_at)
        return {"deployed": False, "reason": "not newer than production", "model_path": str(newest)}
    logger.info("deploying %s (modified %s; production last promoted %s)", newest, modified, promoted_at)
    request = DeployRequest(model_path=str(newest), name=name, reference=str(reference_for(newest, reference)),
                            store_root=store, serving=serving, config=config, production_url=production_url,
                            tracking_uri=tracking_uri)
    state = deploy_model(**request.to_parameters(), return_state=True)
    if state.is_completed():
        return state.result()
    # Ends as the deploy ended (a verdict is a Failed state whose message names it, not a crash): returning the state itself
    # would end this run "Failed: 1/1 states failed" under another name.
    return Failed(name=state.name, message=state.message, data=state.result(raise_on_failure=False))
