"""``rollback_model``: production back to the previous or a named version, recorded everywhere.

The store moves the versions (newer ones to ``rejected/`` with the reason
"rolled back"), MLflow records a rollback run and moves ``champion``, and the
flow run publishes the version table as an artifact (same key as the deploy
flow's, so the history reads as one table).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from servegate.flows.artifacts import artifact_key, version_table
from servegate.pipeline import run_rollback


@task(name="roll production back", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=600)
def roll_production_back(name: str, to_version: int | None, store: str | None, tracking_uri: str | None) -> dict:
    return run_rollback(name, to_version, store, tracking_uri, flow_run_id=str(flow_run.get_id() or "") or None).to_dict()


@flow(name="rollback-model", flow_run_name="rollback-{name}")
def rollback_model(
    name: str, to_version: int | None = None, store: str | None = None, tracking_uri: str | None = None
) -> dict:
    logger = get_run_logger()
    outcome = roll_production_back(name, to_version, store, tracking_uri)
    from servegate.model_store import ModelStore
    from servegate.settings import default_store_root

    create_table_artifact(
        version_table(ModelStore(store or default_store_root()), name),
        key=artifact_key(name, "versions"),
        description=f"versions of {name} after rollback",
    )
    logger.info("production of %s: version %s -> %s", name, outcome["from_version"], outcome["to_version"])
    return outcome
