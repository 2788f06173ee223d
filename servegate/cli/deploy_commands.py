"""``servegate deploy`` (the CI interface) and ``servegate demo``.

Exit codes: 0 promoted, 1 rejected (or rolled back after production
verification failed), 2 error. ``--json`` prints one JSON object on stdout
for every exit, errors included. Progress lines go to stderr; library output
goes to a log file whose path is printed (``--verbose``: to the terminal).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from servegate.cli import deploy_run
from servegate.cli.app import app
from servegate.cli.terminal import Terminal, open_terminal
from servegate.errors import ServegateError, json_error
from servegate.settings import resolve_location, resolve_store_root


def _report_unchanged(terminal: Terminal, request, version: int, json_output: bool) -> int:
    from servegate.deploy.clock import process_age_s
    from servegate.deploy.unchanged import unchanged_outcome

    outcome = unchanged_outcome(request, version).to_dict()
    outcome["wall_s"] = process_age_s()
    if json_output:
        terminal.echo(json.dumps(outcome, indent=2))
    else:
        terminal.echo(f"{request.name}: already serving version {version} (the same model file); nothing created. "
                      "--force-new-version deploys it as a new version")
    return 0


def _deploy(terminal: Terminal, request, json_output: bool, window, force_new_version: bool = False) -> int:
    """Check everything that can be checked, then run the flow; returns the exit code."""
    from servegate.deploy import Verdict, cancel, check_request, exit_code_for, preflight
    from servegate.deploy.inputs import check_reference_early
    from servegate.deploy.unchanged import already_serving

    # Bad flags and files: an error before Prefect, MLflow or TensorFlow start (nothing changed).
    config = check_request(request)
    check_reference_early(request, config)  # the reference against the inputs the model's files state
    deploy_run.check_prefect_api()  # a misconfigured CI job is an error, a re-run or not
    serving = None if force_new_version else already_serving(request)
    if serving is not None:  # a re-run: production serves this very model; no run, no version
        return _report_unchanged(terminal, request, serving, json_output)
    prefect_ready = deploy_run.start_local_prefect_early()
    from servegate.deploy import resources, startup

    startup.prewarm_spare(request)  # the canary's server imports TensorFlow while we do
    from servegate.deploy.clock import process_age_s
    from servegate.deploy.helper_start import HelperStarter

    terminal.note("checking the model and the reference data (before any run is opened)")
    phases = {"start_s": process_age_s()}
    helper = HelperStarter(request.tracking_uri)
    helper.start_watching()  # MLflow's import in a helper once the Prefect server's and the spare's starts are done
    try:
        record = preflight(request, inputs_checked=True)  # the export, the reference against its signature: no run yet
    finally:
        helper.stop_watching()
    try:
        phases["preflight_s"] = process_age_s()
        helper.now()  # the input passed: the helper (when the watcher did not launch it yet) and its store
        resources.open_tracker_soon(request.tracking_uri)
        deploy_run.import_deploy_modules()
        prefect_ready()
        phases["imports_and_prefect_s"] = process_age_s()
        terminal.note("deploy-model flow run (Prefect)")
        from servegate.flows.deploy import run_deploy_flow  # imported above (import_deploy_modules)

        outcome = run_deploy_flow(replace(request, work_dir=record.work_dir))
    finally:
        shutil.rmtree(record.work_dir, ignore_errors=True)
    window.raising = False  # the outcome is known: a signal from here on is noted, the verdict printed
    phases["flow_s"] = process_age_s()
    outcome["store"] = request.store_root
    # This process ran the preflight before the flow's steps: its first step is the attempt's. The
    # flow's timings (and its time.* figures) already count the preflight's steps, the export included.
    outcome.update(startup_s=record.started_s, wall_s=process_age_s(), phases=deploy_run.phase_lengths(phases))
    if outcome["verdict"] == Verdict.CANCELLED:
        outcome["signal"] = cancel.signal_name()
    if json_output:
        terminal.echo(json.dumps(outcome, indent=2))
        terminal.note(deploy_run.verdict_line(outcome))  # for a person reading the CI log
    else:
        for line in deploy_run.summary(outcome):
            terminal.echo(line)
    if terminal.log_path is not None:
        terminal.note(f"library output: {terminal.log_path}")
    return exit_code_for(outcome["verdict"])


def _absolute_if_file(module: str) -> str:
    """A ``.py`` path made absolute: a flow run (or a worker) may start in another directory."""
    return str(Path(module).resolve()) if module.endswith(".py") or "/" in module else module


def _report_error(terminal: Terminal, exc: ServegateError, json_output: bool) -> int:
    if json_output:
        terminal.echo(json.dumps(json_error(exc), indent=2))
    if terminal.log_path is not None:
        terminal.note(f"library output: {terminal.log_path}")
    terminal.note(f"error: {exc}")
    return exc.exit_code


def _report_cancelled(terminal: Terminal, name: str, exc: BaseException, json_output: bool) -> int:
    """A signal that stopped the command outside the flow's steps: nothing of this attempt is left changed."""
    from servegate.deploy.verdict import Verdict

    outcome = {"model_name": name, "verdict": Verdict.CANCELLED.value, "signal": exc.signal, "version": None,
               "reasons": [str(exc)]}
    if json_output:
        terminal.echo(json.dumps(outcome, indent=2))
    terminal.note(f"{name}: {exc}")
    return exc.exit_code


def _finish(terminal: Terminal, code: int) -> None:
    if deploy_run.is_servegate_process():
        from servegate.runtime.fastexit import exit_without_teardown

        terminal.out.flush()
        terminal.err.flush()
        exit_without_teardown(code)
    raise typer.Exit(code)


# Over 60 lines only for its typer options, one per flag; the body is the short part.
@app.command()
def deploy(
    model: Path = typer.Option(..., "--model", help="Keras model file (.keras, .h5) or SavedModel directory"),
    name: str = typer.Option(..., "--name", help="model name (the store and serving name)"),
    reference: Path = typer.Option(..., "--reference", help="reference data: Parquet, CSV or JSON lines"),
    store: Optional[Path] = typer.Option(None, "--store", help="store root (default: $SERVEGATE_STORE or ~/.servegate/store)"),
    serving: str = typer.Option("process", "--serving", help="canary runner: process or docker"),
    config: Optional[Path] = typer.Option(None, "--config", help="validation config (YAML or TOML)"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON object with the outcome (or the error)"),
    production_url: Optional[str] = typer.Option(
        None, "--production-url", help="REST URL of the production server to verify after promotion"
    ),
    docker_image: Optional[str] = typer.Option(None, "--docker-image", help="canary image for --serving docker"),
    custom_objects: list[str] = typer.Option(
        [], "--custom-objects", metavar="MODULE",
        help="module (dotted name or .py file) that registers the model's custom Keras objects; repeatable"),
    unsafe_deserialization: bool = typer.Option(
        False, "--unsafe-deserialization",
        help="let Keras load Lambda layers (runs code stored in the model file; only for files you trust)"),
    canary_deadline: Optional[float] = typer.Option(
        None, "--canary-deadline", min=0, metavar="SECONDS",
        help="seconds the canary server may take to load the model (default: the config's load.deadline_s)"),
    bake: Optional[float] = typer.Option(
        None, "--bake", min=0, metavar="SECONDS",
        help="after promotion, watch production this long and roll back on an alarm (needs --production-url; "
             "default: the config's bake.duration_s, 0 = no bake)"),
    force_new_version: bool = typer.Option(
        False, "--force-new-version",
        help="deploy as a new version even when production already serves this very model file "
             "(default: exit 0, verdict unchanged, nothing created)"),
    traffic: Optional[str] = typer.Option(
        None, "--traffic", metavar="GLOB",
        help="recorded production traffic (request logs, e.g. '/var/log/serving/mymodel-*.tfrecord') for the "
             "shadow check; default: the config's traffic.logs"),
    verbose: bool = typer.Option(False, "--verbose", help="library output and tracebacks on the terminal"),
) -> None:
    """Export, stage, canary, validate, then promote or reject. Exit 0 promoted (or unchanged: production
    already serves this model), 1 rejected, 2 error."""
    deploy_run.library_settings(verbose)
    try:
        store_root = resolve_store_root(store, object_store=True)  # before the log file (SERVEGATE_HOME too)
        if not isinstance(store_root, Path):  # s3://: every up-front check of the bucket, before any run
            from servegate.object_store import ObjectModelStore

            ObjectModelStore.open(store_root)
    except ServegateError as exc:
        _finish(Terminal(sys.stdout, sys.stderr), _report_error(Terminal(sys.stdout, sys.stderr), exc, json_output))
    terminal = open_terminal("deploy", name, verbose, deploy_run.is_servegate_process())
    from servegate.deploy import DeployRequest, cancel

    request = DeployRequest(model_path=model, name=name, reference=reference, store_root=store_root, serving=serving,
                            config=config, production_url=production_url, docker_image=docker_image,
                            custom_objects=tuple(_absolute_if_file(m) for m in custom_objects),
                            unsafe_deserialization=unsafe_deserialization, bake_s=bake,
                            canary_deadline_s=canary_deadline, traffic=traffic)
    try:
        with cancel.handlers() as window:  # SIGTERM/SIGINT (CI's cancel): undone, one JSON object, exit 128+N
            code = _deploy(terminal, request, json_output, window, force_new_version)
    except ServegateError as exc:
        code = _report_error(terminal, exc, json_output)
    except cancel.DeployCancelled as exc:  # before the flow's steps ran, or between them and Prefect
        code = _report_cancelled(terminal, request.name, exc, json_output)
    _finish(terminal, code)


def _refuse_a_store_for_the_demo() -> None:
    """The demo deploys a broken model on purpose into a store of its own: it never uses the store
    ``SERVEGATE_STORE`` names (a directory or a bucket), and says so rather than leave the setting unused."""
    import os

    from servegate.errors import ConfigError

    configured = os.environ.get("SERVEGATE_STORE")
    if configured:
        raise ConfigError(
            f"SERVEGATE_STORE {configured!r}: the demo keeps its own store in its work dir (<work dir>/store, "
            "--work-dir to choose it) and never deploys into yours; run it with SERVEGATE_STORE unset "
            "(env -u SERVEGATE_STORE servegate demo). To deploy to and serve from that store: servegate deploy, "
            "servegate serve (and servegate sync for an s3:// store) with --store", subject="SERVEGATE_STORE")


@app.command()
def demo(
    work_dir: Optional[Path] = typer.Option(
        None, "--work-dir", help="where the demo keeps its store, models and MLflow database (default: a new temp dir)"
    ),
    verbose: bool = typer.Option(False, "--verbose", help="library output and tracebacks on the terminal"),
) -> None:
    """The whole story on the embedded default: train, deploy v1, serve it, reject a broken
    model, promote a better one under live traffic."""
    deploy_run.library_settings(verbose)
    _refuse_a_store_for_the_demo()
    # The demo's store is <work dir>/store: the work dir is a store location like any --store.
    work_dir = resolve_location("--work-dir", work_dir) if work_dir is not None else None
    terminal = open_terminal("demo", "demo", verbose, deploy_run.is_servegate_process())
    from servegate.demo.run import run_demo

    summary = run_demo(work_dir, echo=terminal.echo)
    if terminal.log_path is not None:
        terminal.note(f"library output: {terminal.log_path}")
    raise typer.Exit(0 if summary.ok else 1)
