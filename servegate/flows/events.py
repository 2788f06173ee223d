"""Prefect events about a model's production: ``servegate.model.promoted``, ``.rejected``, ``.rolled_back``.

Emitted by the ``deploy-model`` flow once its outcome is known and by the
``rollback-model`` flow after a rollback, so that Automations can hang on
them (a notification on ``servegate.model.rolled_back``: see
docs/deploying-with-prefect.md). The resource is the model::

    {"prefect.resource.id": "servegate.model.<name>", "prefect.resource.name": "<name>",
     "servegate.version": "<version>"}

and the payload holds the version, what production serves now and before,
the reasons, the figures, the alarm that fired (a bake), and the run links
(MLflow run id and tracking URI, registry version, Prefect flow run id,
report URI). Inside a flow run Prefect adds the flow run, flow and
deployment as related resources. An error outcome emits nothing: it is not a
verdict about the model.
"""

from __future__ import annotations

from typing import Any

PROMOTED = "servegate.model.promoted"
REJECTED = "servegate.model.rejected"
ROLLED_BACK = "servegate.model.rolled_back"
EVENT_OF_VERDICT = {"promoted": PROMOTED, "rejected": REJECTED, "rolled_back": ROLLED_BACK}

#: Payload keys copied from a deploy outcome (servegate.attempt.record.DeployOutcome).
_OUTCOME_KEYS = ("version", "production_version", "previous_production_version", "reasons", "figures",
                 "mlflow_run_id", "mlflow_tracking_uri", "registry_version", "prefect_flow_run_id", "report_uri")


def model_resource(name: str, version: int | None) -> dict[str, str]:
    resource = {"prefect.resource.id": f"servegate.model.{name}", "prefect.resource.name": name}
    if version is not None:
        resource["servegate.version"] = str(version)
    return resource


def _emit(event: str, name: str, version: int | None, payload: dict[str, Any]):
    from prefect.events import emit_event

    return emit_event(event=event, resource=model_resource(name, version), payload=payload)


def emit_deploy_outcome(outcome, alarm: dict[str, Any] | None = None):
    """The event of a deploy's verdict (``outcome``: a DeployOutcome); None for an error outcome."""
    event = EVENT_OF_VERDICT.get(outcome.verdict)
    if event is None:
        return None
    data = outcome.to_dict()
    payload = {key: data.get(key) for key in _OUTCOME_KEYS}
    payload.update(model_name=outcome.model_name, verdict=outcome.verdict, action="deploy", alarm=alarm)
    return _emit(event, outcome.model_name, outcome.version, payload)


def emit_rollback(result: dict[str, Any], flow_run_id: str | None = None):
    """``servegate.model.rolled_back`` for a rollback made by hand (``result``: a ReleaseResult dict).
    The version in the resource is the one taken out of production; nothing is emitted when
    production did not change."""
    if not result.get("changed", True):
        return None
    payload = {"model_name": result["model_name"], "verdict": "rolled_back", "action": "rollback",
               "version": result.get("from_version"), "production_version": result.get("to_version"),
               "previous_production_version": result.get("from_version"), "versions": result.get("versions"),
               "reasons": [result["reason"]] if result.get("reason") else [], "figures": {},
               "mlflow_run_id": result.get("mlflow_run_id"), "prefect_flow_run_id": flow_run_id,
               "champion_registry_version": result.get("champion_registry_version"), "alarm": None}
    return _emit(ROLLED_BACK, result["model_name"], result.get("from_version"), payload)
