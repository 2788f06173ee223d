"""Which process owns an open run, and ending the runs whose owner is gone.

A SIGKILLed deploy never ends its MLflow run; left alone it would show as
``RUNNING`` forever. Every run servegate opens names its owner process
(pid, start time, host: :class:`servegate.runtime.identity.ProcessIdentity`),
and the next run opened in the experiment ends dead owners' runs ``KILLED``.

The owner is bookkeeping, not something a user reads, so it is one tag in
MLflow's system namespace: the MLflow UI lists only tags that do not start with
``mlflow.`` (its ``getVisibleTagValues``), and ``search_runs`` still finds it.
Runs written by older servegate versions carry three visible ``servegate.owner_*``
tags; they are judged too, so an upgrade leaves no run ``RUNNING`` forever.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from servegate.runtime.identity import ProcessIdentity

log = logging.getLogger("servegate.tracking")

OWNER_TAG = "mlflow.servegate.owner"
ENDED_BY_TAG = "servegate.ended_by"
LEGACY_OWNER_PREFIX = "servegate.owner_"  # servegate.owner_pid / _ticks / _host (visible; before OWNER_TAG)
# The bake's state (servegate.deploy.bake): on the run, and on the registry version it baked.
BAKE_RUN_TAG, BAKE_VERSION_TAG = "servegate.bake", "bake"
IN_PROGRESS, INTERRUPTED = "in_progress", "interrupted"


_acting_for: ProcessIdentity | None = None


def act_for(identity: ProcessIdentity) -> None:
    """Name ``identity`` as the owner of the runs this process opens: a helper process that opens
    runs for a deploy (:mod:`servegate.tracking.helper`) names the deploy, which it ends with."""
    global _acting_for
    _acting_for = identity


def owner_tags() -> dict[str, str]:
    """The tag naming this process (or the process it acts for) as the owner of a run it opens."""
    return {OWNER_TAG: str(_acting_for or ProcessIdentity.current())}


def run_owner(tags: Mapping[str, str]) -> ProcessIdentity | None:
    """The owner a run's tags name (the hidden tag, or the legacy visible ones); None without one."""
    text = tags.get(OWNER_TAG)
    if text:
        return ProcessIdentity.parse(text)
    return ProcessIdentity.from_dict(tags, prefix=LEGACY_OWNER_PREFIX)


def end_abandoned_runs(client: Any, tracking_uri: str, experiment_id: str) -> list[str]:
    """End ``KILLED`` every ``RUNNING`` run of the experiment whose owner process is gone.

    Only owners on this host are judged (another host's pid means nothing here);
    an owner is gone when its pid runs no more, or runs with another start time
    (a recycled pid). Runs without an owner are left alone. Returns the run ids
    ended. Never raises: repairing old runs must not stop a new deploy.
    """
    ended: list[str] = []
    try:
        runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    except Exception as exc:
        log.warning("MLflow: could not look for abandoned runs at %s: %s", tracking_uri, exc)
        return ended
    for run in runs:
        owner = run_owner(run.data.tags)
        if owner is None or not owner.is_dead():
            continue
        try:
            client.set_tag(run.info.run_id, ENDED_BY_TAG,
                           f"a later run: owner pid {owner.pid} on {owner.host} was gone")
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
            if run.data.tags.get(BAKE_RUN_TAG) == IN_PROGRESS:
                _mark_bake_interrupted(client, run.info.run_id)
        except Exception as exc:
            log.warning("MLflow: could not end abandoned run %s: %s", run.info.run_id, exc)
    return ended


def _mark_bake_interrupted(client: Any, run_id: str) -> None:
    """The run died while baking: it, and the registry versions it registered, say ``interrupted``."""
    client.set_tag(run_id, BAKE_RUN_TAG, INTERRUPTED)
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        if version.tags.get(BAKE_VERSION_TAG) == IN_PROGRESS:
            client.set_model_version_tag(version.name, version.version, BAKE_VERSION_TAG, INTERRUPTED)
