"""``servegate serve``: the bundled model server on a model's production base path.

It serves ``<store>/production/<name>`` (the directory promotions rename
versions into) with TensorFlow Serving's ``latest`` policy, so a promotion
is picked up within one poll interval. The store root comes from
``--store``, else ``SERVEGATE_STORE``, else ``SERVEGATE_HOME``'s: see
:func:`servegate.settings.resolve_store_root`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer

from servegate.cli.app import app
from servegate.errors import ConfigError
from servegate.model_names import MODEL_NAME_RULE, is_model_name
from servegate.settings import resolve_store_root



def server_argv(
    name: str, store: Path, port: int, grpc_port: int, host: str, poll_seconds: float,
    monitoring_config_file: Path | None = None, warmup: bool = True,
) -> list[str]:
    """The bundled server's TensorFlow Serving flags for ``servegate serve``'s options."""
    if not is_model_name(name):
        raise ConfigError(f"--name {name!r}: expected a model name ({MODEL_NAME_RULE})",
                          subject="--name")
    base_path = Path(store).expanduser() / "production" / name
    if not base_path.is_dir():
        raise ConfigError(
            f"no production base path for model {name!r} at {base_path}: promote a version first "
            "(servegate deploy), or pass --store", subject=str(base_path),
        )
    return [
        f"--model_name={name}",
        f"--model_base_path={base_path}",
        f"--rest_api_port={port}",
        f"--port={grpc_port}",
        f"--bind_address={host}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
        f"--enable_model_warmup={str(warmup).lower()}",
    ] + ([f"--monitoring_config_file={monitoring_config_file}"] if monitoring_config_file else [])


@app.command()
def serve(
    name: str = typer.Option(..., "--name", help="Model name: serves <store>/production/<name>."),
    port: int = typer.Option(8501, "--port", help="REST port (TensorFlow Serving's 8501 by default)."),
    grpc_port: int = typer.Option(8500, "--grpc-port", help="gRPC port (8500 by default; 0 turns gRPC off)."),
    store: Optional[Path] = typer.Option(None, "--store", help="Store root (default: $SERVEGATE_STORE or ~/.servegate/store)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 to serve other machines)."),
    poll_seconds: float = typer.Option(1.0, "--poll-seconds", help="Seconds between polls for new versions."),
    metrics: bool = typer.Option(
        False, "--metrics", help="Export TensorFlow Serving's Prometheus metrics at /monitoring/prometheus/metrics on the REST port."),
    monitoring_config_file: Optional[Path] = typer.Option(
        None, "--monitoring-config-file",
        help="A text MonitoringConfig file, as TensorFlow Serving's --monitoring_config_file (instead of --metrics)."),
    warmup: bool = typer.Option(
        True, "--warmup/--no-warmup",
        help="Replay each version's assets.extra/tf_serving_warmup_requests before serving it (default on)."),
) -> int:
    """Serve a model's production versions with the bundled TensorFlow-Serving-compatible server."""
    if metrics and monitoring_config_file is not None:
        raise ConfigError("--metrics and --monitoring-config-file: give one of them (--metrics writes the config)",
                          subject="--monitoring-config-file")
    with tempfile.TemporaryDirectory(prefix="servegate-serve-") as temp:
        if metrics:
            from servegate.serving.server.monitoring_config import prometheus_config_text

            monitoring_config_file = Path(temp) / "monitoring_config.txt"
            monitoring_config_file.write_text(prometheus_config_text())
        argv = server_argv(name, resolve_store_root(store), port, grpc_port, host, poll_seconds,
                           monitoring_config_file, warmup)
        from servegate.serving.server.without_keras import keep_keras_out

        keep_keras_out()  # like `python -m servegate.serving`: no Keras in a server
        from servegate.serving.server.main import run  # imports TensorFlow only once the server starts

        code = run(argv)
    if code:
        raise typer.Exit(code)
    return 0
