"""``deploy_model``: the deploy pipeline as a Prefect flow.

It reads like the diagram in DESIGN.md::

    export ─► stage ─► canary ─► validate ─┬─► promote ─► verify production ─► done
                                           └─► reject (rolled back)

Stage and promote run inside one Prefect ``transaction``: anything that fails
inside it (the canary, a rejected verdict, production verification) rolls the
transaction back, and the tasks' ``on_rollback`` hooks undo what they did —
production goes back to the version it served, the staged version moves to
``rejected/`` with the reason. The canary is stopped on every path (a
``finally``). A rejected model ends the flow run **Failed** with the reasons as
its message, after the rollback, so that ``prefect deployment run --watch``
exits non-zero. A promoted run returns the outcome (see
:class:`servegate.pipeline.DeployOutcome`) as a dict; a rejected or rolled-back
run's state carries the exception, with the same dict as its ``outcome``
attribute.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed
from prefect.transactions import transaction

from servegate.flows.artifacts import publish_deploy_artifacts
from servegate.pipeline import Deployment, DeployRequest, ModelRejected, ProductionVerificationError
from servegate.tasks import deploy_tasks as t


@flow(name="deploy-model", flow_run_name="deploy-{name}", validate_parameters=True)
def deploy_model(
    model_path: str,
    name: str,
    reference: str,
    store: str | None = None,
    serving: str = "process",
    config: str | None = None,
    production_url: str | None = None,
    tracking_uri: str | None = None,
    docker_image: str | None = None,
    production_deadline_s: float = 60.0,
) -> Any:
    """Export, stage, canary, validate, promote or reject, verify production."""
    logger = get_run_logger()
    request = DeployRequest(
        model_path=model_path, name=name, reference=reference, store_root=store, serving=serving,
        config=config, production_url=production_url, tracking_uri=tracking_uri, docker_image=docker_image,
        production_deadline_s=production_deadline_s,
    )
    dep = Deployment(request, progress=logger.info)
    dep.flow_run_id = str(flow_run.get_id() or "") or None
    try:
        t.check_inputs(dep)
        t.open_mlflow_run(dep)
        error: BaseException | None = None
        try:
            t.export_model(dep)
            t.check_reference(dep)
            t.compute_golden(dep)
            with transaction():
                t.stage_version(dep)
                t.register_version(dep)
                try:
                    t.boot_canary(dep)
                    t.validate_canary(dep)
                finally:
                    t.stop_canary(dep)
                dep.require_passed()
                t.promote_version(dep)
                t.verify_production(dep)
        except BaseException as exc:
            error = exc
        outcome = t.record_outcome(dep, error)
        publish_deploy_artifacts(dep, outcome)
        if isinstance(error, (ModelRejected, ProductionVerificationError)):
            logger.error("deploy of %s %s: %s", name, outcome.verdict, "; ".join(outcome.reasons))
            # A Failed state's data must be an exception (Prefect raises it for callers and
            # subflow parents); the outcome travels on it for in-process callers like the CLI.
            error.outcome = outcome.to_dict()
            return Failed(message="; ".join(outcome.reasons), data=error)
        if error is not None:
            raise error
        logger.info("deploy of %s: version %s promoted", name, outcome.version)
        return outcome.to_dict()
    finally:
        t.forget_live(dep)
        dep.cleanup()
