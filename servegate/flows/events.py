"""Prefect events about a model's production: ``servegate.model.promoted``, ``.rejected``, ``.rolled_back``.

Emitted by the ``deploy-model`` flow once its outcome is known, and by the
one release path (:class:`servegate.release.Release`) after every rollback
made outside a deploy (``servegate rollback``, the ``rollback-model`` flow),
so that Automations can hang on them (a notification on ``servegate.model.rolled_back``: see
docs/deploying-with-prefect.md). The resource is the model::

    {"prefect.resource.id": "servegate.model.<name>", "prefect.resource.name": "<name>",
     "servegate.version": "<version>"}

and the payload holds the version, what production serves now and before,
the reasons, the figures, the alarm that fired (a bake), and the run links
(MLflow run id and tracking URI, registry version, Prefect flow run id,
report URI). Inside a flow run Prefect adds the flow run, flow and
deployment as related resources. An error outcome emits nothing: it is not a
verdict about the model.

Outside a flow run (``servegate rollback``) the event is sent at once, over
Prefect's events client, to the API at ``PREFECT_API_URL``, and a failure to
send raises :class:`~servegate.errors.OrchestrationError`: the caller learns
that no Automation will hear of the change. With no Prefect API configured
there is no server whose Automations could hear it, and nothing is sent.
"""

from __future__ import annotations

from typing import Any

from servegate.deploy.progress import in_prefect_run
from servegate.deploy.verdict import Verdict

PROMOTED = Verdict.PROMOTED.event
REJECTED = Verdict.REJECTED.event
ROLLED_BACK = Verdict.ROLLED_BACK.event

#: Payload keys copied from a deploy outcome (servegate.deploy.record.DeployOutcome).
_OUTCOME_KEYS = ("version", "production_version", "previous_production_version", "reasons", "figures",
                 "mlflow_run_id", "mlflow_tracking_uri", "registry_version", "prefect_flow_run_id", "report_uri",
                 "bake")


def model_resource(name: str, version: int | None) -> dict[str, str]:
    resource = {"prefect.resource.id": f"servegate.model.{name}", "prefect.resource.name": name}
    if version is not None:
        resource["servegate.version"] = str(version)
    return resource


def _emit(event: str, name: str, version: int | None, payload: dict[str, Any]) -> str | None:
    """The event's id, or None when nothing was sent (no Prefect API configured, outside a run)."""
    from prefect.events import Event, emit_event
    from prefect.settings import PREFECT_API_URL

    if in_prefect_run():  # the run's events worker sends it, with the run as a related resource
        emitted = emit_event(event=event, resource=model_resource(name, version), payload=payload)
        return str(emitted.id) if emitted is not None else None
    url = PREFECT_API_URL.value()
    if not url:
        return None
    built = Event(event=event, resource=model_resource(name, version), payload=payload)
    _send_now(built, url)
    return str(built.id)


def _send_now(event, url: str) -> None:
    from prefect.events.clients import get_events_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    from servegate.errors import OrchestrationError

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(event)

    try:
        run_coro_as_sync(send())
    except Exception as exc:  # websockets, httpx and OS errors alike: the event did not go out
        raise OrchestrationError(f"PREFECT_API_URL={url}: event {event.event} not sent "
                                 f"({type(exc).__name__}: {exc})", subject="PREFECT_API_URL") from exc


def emit_deploy_outcome(outcome, alarm: dict[str, Any] | None = None) -> str | None:
    """The event of a deploy's verdict (``outcome``: a DeployOutcome); None for an error outcome."""
    event = Verdict(outcome.verdict).event
    if event is None:
        return None
    data = outcome.to_dict()
    payload = {key: data.get(key) for key in _OUTCOME_KEYS}
    payload.update(model_name=outcome.model_name, verdict=outcome.verdict, action="deploy", alarm=alarm)
    return _emit(event, outcome.model_name, outcome.version, payload)


def emit_rollback(result: dict[str, Any], flow_run_id: str | None = None) -> str | None:
    """``servegate.model.rolled_back`` for a rollback outside a deploy (``result``: a ReleaseResult dict);
    returns the event's id. The version in the resource is the one taken out of production; nothing
    is emitted when production did not change."""
    if not result.get("changed", True):
        return None
    payload = {"model_name": result["model_name"], "verdict": Verdict.ROLLED_BACK.value, "action": "rollback",
               "version": result.get("from_version"), "production_version": result.get("to_version"),
               "previous_production_version": result.get("from_version"), "versions": result.get("versions"),
               "reasons": [result["reason"]] if result.get("reason") else [], "figures": {},
               "mlflow_run_id": result.get("mlflow_run_id"), "prefect_flow_run_id": flow_run_id,
               "champion_registry_version": result.get("champion_registry_version"), "alarm": None}
    return _emit(ROLLED_BACK, result["model_name"], result.get("from_version"), payload)
