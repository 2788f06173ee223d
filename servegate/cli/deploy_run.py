"""What ``servegate deploy`` does around the flow: Prefect's readiness, the flow run, the summary.

The command runs the ``deploy-model`` flow in this process: against the
Prefect API at ``PREFECT_API_URL`` when that is set (checked first: an
unreachable API is an error before anything changes), otherwise on a local
Prefect server started at the top of the command (:mod:`servegate.flows.local_api`).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Callable

from servegate.errors import OrchestrationError


def library_settings(verbose: bool) -> None:
    """Environment for the libraries, set before they are imported."""
    # No network beyond loopback is assumed: Prefect's server would log a failed telemetry call.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Likewise MLflow's usage telemetry: two threads, a config fetch and posts to an outside host, none of
    # them the deploy's work (the runs, metrics and registry are untouched). Set by the user: kept as set.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # TensorFlow's C++ log below ERROR; with --verbose its warnings too.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")


def check_prefect_api(timeout_s: float = 5.0) -> str | None:
    """The Prefect API URL when one is configured and answers; None for the local server.

    Raises :class:`OrchestrationError` naming the URL when it does not answer.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return None
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as exc:
        raise OrchestrationError(
            f"PREFECT_API_URL={url}: Prefect API not reachable ({type(exc).__name__}: {exc}). "
            "Start it with `prefect server start`, or unset PREFECT_API_URL to run on a local Prefect",
            subject=url,
        ) from exc
    return url


def start_local_prefect_early() -> Callable[[], None]:
    """With no Prefect API configured, start the local Prefect server now; returns ``ready()``.

    It boots on another core while this process imports TensorFlow, Prefect's
    engine and MLflow. ``ready()`` waits until it answers and points this
    process's Prefect clients at it. With ``PREFECT_API_URL`` set, nothing.
    """
    from servegate.flows import local_api

    if not local_api.ephemeral_mode_wanted():
        return lambda: None
    server = local_api.LocalPrefectServer.launch()

    def ready() -> None:
        server.wait_until_healthy(local_api.startup_timeout_s())
        server.use()

    return ready


# What a deploy needs anyway, imported while the local Prefect server boots (the flow's order: the
# engine, export's TensorFlow/Keras). MLflow loads in the tracker's helper process, never here.
_DEPLOY_IMPORTS = ("servegate.flows.deploy", "prefect.flow_engine", "tensorflow", "keras")


def import_deploy_modules() -> None:
    for module in _DEPLOY_IMPORTS:
        importlib.import_module(module)


def is_servegate_process() -> bool:
    """True when this interpreter runs the ``servegate`` command itself (``python -m servegate``
    or the console script), not a test or another program calling :func:`servegate.cli.main`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "servegate.__main__":
        return True
    return Path(sys.argv[0]).name == "servegate"


def phase_lengths(ends: dict[str, float]) -> dict[str, float]:
    """Process ages at the end of each phase (in order) -> each phase's length in seconds."""
    lengths, previous = {}, 0.0
    for phase, end in ends.items():
        lengths[phase], previous = round(end - previous, 3), end
    return lengths


def verdict_line(outcome: dict) -> str:
    """``<model>: version N <verdict>``; a promotion with a gate that judged nothing says so, and why."""
    verdict = outcome["verdict"].replace("_", " ")
    not_run = outcome.get("gates_not_run") or []
    if outcome["verdict"] == "promoted" and not_run:
        verdict += " without a quality check: " + "; ".join(f"{g['check']}: {g['reason']}" for g in not_run)
    return f"{outcome['model_name']}: version {outcome['version']} {verdict}"


def summary(outcome: dict) -> list[str]:
    """The verdict for a person: one line, the reasons, what was validated, where to look."""
    lines = [verdict_line(outcome)]
    lines += [f"  - {reason}" for reason in outcome.get("reasons") or []]
    validated = ", ".join(f"{o['name']} ({o['task']})" for o in outcome.get("outputs") or [])
    if validated:
        lines.append(f"  outputs validated: {validated}")
    bake = outcome.get("bake")
    if bake:
        said = bake["verdict"] if bake["verdict"] != "inconclusive" else f"inconclusive, not judged: {bake['not_judged']}"
        lines.append(f"  bake: {said}")
    store = f" (store {outcome['store']})" if outcome.get("store") else ""
    lines.append(f"  production serves: {outcome.get('production_version')}{store}")
    lines.append(f"  MLflow run: {outcome.get('mlflow_run_id')}  Prefect flow run: {outcome.get('prefect_flow_run_id')}")
    return lines
