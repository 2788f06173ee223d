"""``servegate serve``: the bundled model server on a model's production base path.

It serves ``<store>/production/<name>`` (the directory promotions rename
versions into) with TensorFlow Serving's ``latest`` policy, so a promotion
is picked up within one poll interval. The store root comes from
``--store``, else ``SERVEGATE_STORE``, else ``SERVEGATE_HOME``'s: see
:func:`servegate.settings.resolve_store_root`. With an ``s3://`` store root
it serves a local directory that the sync's own pass keeps in step with
production (:mod:`servegate.object_store.serve_sync`).
"""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from servegate.cli.app import app
from servegate.errors import ConfigError
from servegate.model_names import MODEL_NAME_RULE, is_model_name
from servegate.settings import resolve_store_root


def _check_name(name: str) -> None:
    if not is_model_name(name):
        raise ConfigError(f"--name {name!r}: expected a model name ({MODEL_NAME_RULE})",
                          subject="--name")


def server_argv(
    name: str, store: Path, port: int, grpc_port: int, host: str, poll_seconds: float,
    monitoring_config_file: Path | None = None, warmup: bool = True,
) -> list[str]:
    """The bundled server's TensorFlow Serving flags for ``servegate serve``'s options."""
    _check_name(name)
    base_path = Path(store).expanduser() / "production" / name
    if not base_path.is_dir():
        raise ConfigError(
            f"no production base path for model {name!r} at {base_path}: promote a version first "
            "(servegate deploy), or pass --store", subject=str(base_path),
        )
    return base_path_argv(name, base_path, port, grpc_port, host, poll_seconds, monitoring_config_file, warmup)


def base_path_argv(
    name: str, base_path: Path, port: int, grpc_port: int, host: str, poll_seconds: float,
    monitoring_config_file: Path | None = None, warmup: bool = True,
) -> list[str]:
    return [
        f"--model_name={name}",
        f"--model_base_path={base_path}",
        f"--rest_api_port={port}",
        f"--port={grpc_port}",
        f"--bind_address={host}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
        f"--enable_model_warmup={str(warmup).lower()}",
    ] + ([f"--monitoring_config_file={monitoring_config_file}"] if monitoring_config_file else [])


def _run_server(argv: list[str]) -> int:
    from servegate.serving.server.without_keras import keep_keras_out

    keep_keras_out()  # like `python -m servegate.serving`: no Keras in a server
    from servegate.serving.server.main import run  # imports TensorFlow only once the server starts

    return run(argv)


def _serve_from_bucket(location, name: str, temp: Path, port: int, grpc_port: int, host: str,
                       poll_seconds: float, monitoring_config_file: Path | None, warmup: bool,
                       node_id: str | None) -> int:
    """The first pass places production's version, then the server starts and the passes go on beside it."""
    from servegate.object_store.serve_sync import ServedFromBucket, default_node_id, serving_url

    _check_name(name)
    base_path = temp / "models" / name
    base_path.mkdir(parents=True)
    synced = ServedFromBucket(location, name, base_path, node_id or default_node_id(port), serving_url(host, port),
                              poll_seconds, say=lambda line: print(line, file=sys.stderr, flush=True))
    # Until the server installs its own handlers: SIGTERM during the first download ends the command
    # through the finally below (directory and heartbeat removed), not by the default abrupt exit.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        synced.first_pass()
        synced.start()
        return _run_server(base_path_argv(name, base_path, port, grpc_port, host, poll_seconds,
                                          monitoring_config_file, warmup))
    finally:
        synced.stop()


# Over 60 lines only for its typer options, one per flag; the body is the short part.
@app.command()
def serve(
    name: str = typer.Option(..., "--name", help="Model name: serves <store>/production/<name>."),
    port: int = typer.Option(8501, "--port", help="REST port (TensorFlow Serving's 8501 by default)."),
    grpc_port: int = typer.Option(8500, "--grpc-port", help="gRPC port (8500 by default; 0 turns gRPC off)."),
    store: Optional[Path] = typer.Option(
        None, "--store", help="Store root: a directory or s3://BUCKET/PREFIX (default: $SERVEGATE_STORE or "
                              "~/.servegate/store)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 to serve other machines)."),
    poll_seconds: float = typer.Option(
        1.0, "--poll-seconds", help="Seconds between polls for new versions (of the bucket too, with s3://)."),
    metrics: bool = typer.Option(
        False, "--metrics", help="Export TensorFlow Serving's Prometheus metrics at /monitoring/prometheus/metrics on the REST port."),
    monitoring_config_file: Optional[Path] = typer.Option(
        None, "--monitoring-config-file",
        help="A text MonitoringConfig file, as TensorFlow Serving's --monitoring_config_file (instead of --metrics)."),
    warmup: bool = typer.Option(
        True, "--warmup/--no-warmup",
        help="Replay each version's assets.extra/tf_serving_warmup_requests before serving it (default on)."),
    node_id: Optional[str] = typer.Option(
        None, "--node-id", help="With an s3:// store: this server's id in the fleet's heartbeats (default: "
                                "<host name>-serve-<port>)."),
) -> int:
    """Serve a model's production versions with the bundled TensorFlow-Serving-compatible server."""
    if metrics and monitoring_config_file is not None:
        raise ConfigError("--metrics and --monitoring-config-file: give one of them (--metrics writes the config)",
                          subject="--monitoring-config-file")
    location = resolve_store_root(store, object_store=True)
    if node_id is not None and isinstance(location, Path):
        raise ConfigError(f"--node-id {node_id!r}: only a server on an s3:// store reports to a fleet; the store "
                          f"{location} is a directory (leave --node-id out)", subject="--node-id")
    with tempfile.TemporaryDirectory(prefix="servegate-serve-") as temp:
        if metrics:
            from servegate.serving.server.monitoring_config import prometheus_config_text

            monitoring_config_file = Path(temp) / "monitoring_config.txt"
            monitoring_config_file.write_text(prometheus_config_text())
        if isinstance(location, Path):
            code = _run_server(server_argv(name, location, port, grpc_port, host, poll_seconds,
                                           monitoring_config_file, warmup))
        else:
            code = _serve_from_bucket(location, name, Path(temp), port, grpc_port, host, poll_seconds,
                                      monitoring_config_file, warmup, node_id)
    if code:
        raise typer.Exit(code)
    return 0
