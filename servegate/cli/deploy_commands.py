"""``servegate deploy`` (the CI interface) and ``servegate demo``.

``deploy`` runs the ``deploy-model`` Prefect flow in this process: against
the Prefect API at ``PREFECT_API_URL`` when that is set (checked first: an
unreachable API is an error, exit 2, before anything changes), otherwise on a
local ephemeral Prefect that lives as long as the command. Exit codes: 0
promoted, 1 rejected (or rolled back after production verification failed),
2 error. ``--json`` prints one JSON object on stdout; progress goes to stderr
on a terminal.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from servegate.cli.app import app
from servegate.errors import OrchestrationError, ServegateError


def _quiet_prefect_unless_terminal(json_output: bool) -> None:
    """Prefect logs each task at INFO on stderr: the progress a person at a terminal wants,
    noise in CI logs. Must run before Prefect is imported."""
    # No network beyond loopback is assumed: Prefect's server would log a failed telemetry call.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "PREFECT_LOGGING_LEVEL" in os.environ:
        return
    if json_output or not sys.stderr.isatty():
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"


def check_prefect_api(timeout_s: float = 5.0) -> str | None:
    """The Prefect API URL when one is configured and answers; None for the ephemeral mode.

    Raises :class:`OrchestrationError` naming the URL when it does not answer.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return None
    import httpx

    health = url.rstrip("/") + "/health"
    try:
        response = httpx.get(health, timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise OrchestrationError(
            f"Prefect API not reachable at PREFECT_API_URL={url} ({type(exc).__name__}: {exc}). "
            "Start it with `prefect server start`, or unset PREFECT_API_URL to run on a local ephemeral Prefect"
        ) from exc
    return url


def start_local_prefect_early() -> Callable[[], None]:
    """With no Prefect API configured, start the local Prefect server now; returns ``ready()``.

    Prefect's ephemeral mode would start the same server at the flow's first
    API call and wait for it, idle. Started here (see
    :mod:`servegate.flows.local_api`), it boots on another core while this
    process imports TensorFlow, Prefect's engine and MLflow. ``ready()`` waits
    until it answers (Prefect's ephemeral start-up timeout; a server that
    fails raises :class:`OrchestrationError`) and points this process's
    Prefect clients at it; call it before the flow runs. The server stops at
    interpreter exit, after Prefect's log and event workers have drained.
    With ``PREFECT_API_URL`` set (or ephemeral mode off) this does nothing.
    """
    from servegate.flows import local_api

    if not local_api.ephemeral_mode_wanted():
        return lambda: None
    server = local_api.LocalPrefectServer.launch()

    def ready() -> None:
        server.wait_until_healthy(local_api.startup_timeout_s())
        server.use()

    return ready


# What a deploy needs anyway, imported while the local Prefect server boots
# (the order is the flow's order: the engine, export's TensorFlow/Keras, MLflow).
_DEPLOY_IMPORTS = ("servegate.flows.deploy", "prefect.flow_engine", "tensorflow", "keras", "mlflow",
                   "servegate.tracking.tracker")


def import_deploy_modules() -> None:
    for module in _DEPLOY_IMPORTS:
        importlib.import_module(module)


def _is_servegate_process() -> bool:
    """True when this interpreter runs the ``servegate`` command itself (``python -m servegate``
    or the console script), not a test or another program calling :func:`servegate.cli.main`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "servegate.__main__":
        return True
    return Path(sys.argv[0]).name == "servegate"


def run_deploy_flow(**parameters) -> dict:
    """Run ``deploy_model`` in this process and return the outcome as a dict.

    A rejected or rolled-back deploy ends the flow run Failed with an exception
    that carries the outcome (``.outcome``); an error re-raises the original exception (a
    :class:`ServegateError` keeps its message and exit code).
    """
    from servegate.flows.deploy import deploy_model

    state = deploy_model(**parameters, return_state=True)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException) and isinstance(getattr(data, "outcome", None), dict):
        return data.outcome  # rejected, or rolled back after production verification failed
    if isinstance(data, BaseException):
        if isinstance(data, ServegateError):
            raise data
        raise OrchestrationError(f"deploy flow run failed: {type(data).__name__}: {data}") from data
    if not isinstance(data, dict):
        raise OrchestrationError(f"deploy flow run ended {state.type.value} without an outcome: {state.message}")
    return data


def exit_code_for(verdict: str) -> int:
    return {"promoted": 0, "rejected": 1, "rolled_back": 1}.get(verdict, 2)


def _print_summary(outcome: dict) -> None:
    verdict = outcome["verdict"]
    line = f"{outcome['model_name']}: version {outcome['version']} {verdict.replace('_', ' ')}"
    typer.echo(line)
    for reason in outcome.get("reasons") or []:
        typer.echo(f"  - {reason}")
    typer.echo(f"  production serves: {outcome.get('production_version')}")
    typer.echo(f"  MLflow run: {outcome.get('mlflow_run_id')}  Prefect flow run: {outcome.get('prefect_flow_run_id')}")


@app.command()
def deploy(
    model: Path = typer.Option(..., "--model", help="Keras model file (.keras, .h5) or SavedModel directory"),
    name: str = typer.Option(..., "--name", help="model name (the store and serving name)"),
    reference: Path = typer.Option(..., "--reference", help="reference data: Parquet, CSV or JSON lines"),
    store: Optional[Path] = typer.Option(None, "--store", help="store root (default: $SERVEGATE_STORE or ~/.servegate/store)"),
    serving: str = typer.Option("process", "--serving", help="canary runner: process or docker"),
    config: Optional[Path] = typer.Option(None, "--config", help="validation config (YAML or TOML)"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON object with the outcome"),
    production_url: Optional[str] = typer.Option(
        None, "--production-url", help="REST URL of the production server to verify after promotion"
    ),
    docker_image: Optional[str] = typer.Option(None, "--docker-image", help="canary image for --serving docker"),
) -> None:
    """Export, stage, canary, validate, then promote or reject. Exit 0 promoted, 1 rejected, 2 error."""
    _quiet_prefect_unless_terminal(json_output)
    from servegate.pipeline import DeployRequest, check_request

    # Bad input is an error before Prefect, MLflow or a canary start (exit 2, nothing changed).
    check_request(DeployRequest(model_path=model, name=name, reference=reference, store_root=store,
                                serving=serving, config=config))
    check_prefect_api()
    prefect_ready = start_local_prefect_early()
    if serving == "process":
        # The canary's server imports TensorFlow while this process does (runners/warm.py).
        from servegate.serving.runners import warm

        warm.prewarm(name)
    import_deploy_modules()
    prefect_ready()
    outcome = run_deploy_flow(
        model_path=str(model), name=name, reference=str(reference), store=str(store) if store else None,
        serving=serving, config=str(config) if config else None, production_url=production_url,
        docker_image=docker_image,
    )
    if json_output:
        typer.echo(json.dumps(outcome, indent=2))
    else:
        _print_summary(outcome)
    code = exit_code_for(outcome["verdict"])
    if _is_servegate_process():
        from servegate.fastexit import exit_without_teardown

        exit_without_teardown(code)
    raise typer.Exit(code)


@app.command()
def demo(
    work_dir: Optional[Path] = typer.Option(
        None, "--work-dir", help="where the demo keeps its store, models and MLflow database (default: a new temp dir)"
    ),
) -> None:
    """The whole story on the embedded default: train, deploy v1, serve it, reject a broken
    model, promote a better one under live traffic."""
    _quiet_prefect_unless_terminal(False)
    check_prefect_api()
    from servegate.demo.run import run_demo

    summary = run_demo(work_dir, echo=typer.echo)
    raise typer.Exit(0 if summary.ok else 1)
