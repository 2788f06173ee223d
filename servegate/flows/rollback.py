"""``rollback_model``: production back to the previous or a named version, recorded everywhere.

The same code as ``servegate rollback``: one call to
:meth:`servegate.release.Release.rollback`, which also emits
``servegate.model.rolled_back``. The store moves the versions
(newer ones to ``rejected/``, reason "rolled back"); MLflow moves ``champion``,
tags the rolled-back versions ``rolled_back`` with the reason and records a
rollback run (tagged with this flow run's id). The flow run publishes the
version table as an artifact (same key as the deploy flow's, so the history
reads as one table).
"""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from servegate.flows.artifacts import artifact_key, version_table
from servegate.release import DEFAULT_ROLLBACK_REASON, Release


def _run_name() -> str:
    """``rollback-<model>-<UTC time>``: each rollback of a model is its own line in the Prefect UI."""
    stamp = (flow_run.scheduled_start_time or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"rollback-{(flow_run.parameters or {}).get('name', 'model')}-{stamp}"


@task(name="roll production back", cache_policy=NO_CACHE, persist_result=False, timeout_seconds=600)
def roll_production_back(name: str, to_version: int | None, reason: str, run_id: str | None,
                         store: str | None, tracking_uri: str | None) -> dict:
    flow_run_id = str(flow_run.get_id() or "") or None
    result = Release(store, tracking_uri).rollback(name, to_version, reason=reason, run_id=run_id,
                                                   flow_run_id=flow_run_id)
    return result.to_dict()


@flow(name="rollback-model", flow_run_name=_run_name)
def rollback_model(
    name: str,
    to_version: int | None = None,
    store: str | None = None,
    tracking_uri: str | None = None,
    reason: str = DEFAULT_ROLLBACK_REASON,
    run_id: str | None = None,
) -> dict:
    """Production of ``name`` back to the previous version (or ``to_version``); returns the
    :class:`~servegate.release.ReleaseResult` as a dict. ``run_id``: what caused it (kept in the
    store's history and on the MLflow rollback run)."""
    logger = get_run_logger()
    # Release emits servegate.model.rolled_back (inside the task: the flow run is a related resource)
    outcome = roll_production_back(name, to_version, reason, run_id, store, tracking_uri)
    create_table_artifact(
        version_table(Release(store, tracking_uri).store, name),
        key=artifact_key(name, "versions"),
        description=f"versions of {name} after rollback",
    )
    logger.info("production of %s: version %s -> %s (MLflow run %s, champion: registry version %s)", name,
                outcome["from_version"], outcome["to_version"], outcome["mlflow_run_id"],
                outcome["champion_registry_version"])
    return outcome
