"""``servegate tap``: record production traffic in front of a stock TensorFlow Serving.

Point clients at the tap instead of TensorFlow Serving; it forwards every
request and answer unchanged and writes a sample as ``PredictionLog`` TFRecord
files that ``servegate deploy --traffic`` replays in the shadow check.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from servegate.cli.app import app
from servegate.errors import ConfigError


def _check(upstream_rest: str | None, upstream_grpc: str | None, port: int, grpc_port: int,
           sampling_rate: float, file_max_mb: float, total_max_mb: float, queue_size: int) -> None:
    if not upstream_rest and not upstream_grpc:
        raise ConfigError("give --upstream-rest (e.g. http://127.0.0.1:8501) and/or --upstream-grpc "
                          "(e.g. 127.0.0.1:8500): the TensorFlow Serving to forward to")
    if upstream_rest and not upstream_rest.startswith(("http://", "https://")):
        raise ConfigError(f"--upstream-rest {upstream_rest!r}: expected an http:// or https:// URL")
    if upstream_rest and not port:
        raise ConfigError("--upstream-rest needs --port (the tap's REST port) other than 0")
    if upstream_grpc and not grpc_port:
        raise ConfigError("--upstream-grpc needs --grpc-port (the tap's gRPC port) other than 0")
    if not 0.0 <= sampling_rate <= 1.0:
        raise ConfigError(f"--sampling-rate {sampling_rate}: expected a number from 0 to 1")
    if not 0 < file_max_mb <= total_max_mb:
        raise ConfigError(f"--file-max-mb {file_max_mb} and --total-max-mb {total_max_mb}: "
                          "expected 0 < file max <= total max")
    if queue_size < 1:
        raise ConfigError(f"--queue-size {queue_size}: expected at least 1")


@app.command()
def tap(
    log_dir: Path = typer.Option(..., "--log-dir", help="Directory of the request logs (<model>-*.tfrecord)."),
    upstream_rest: Optional[str] = typer.Option(None, "--upstream-rest", help="TensorFlow Serving's REST URL."),
    upstream_grpc: Optional[str] = typer.Option(None, "--upstream-grpc", help="TensorFlow Serving's gRPC host:port."),
    port: int = typer.Option(8501, "--port", help="The tap's REST port (8501 by default)."),
    grpc_port: int = typer.Option(8500, "--grpc-port", help="The tap's gRPC port (8500 by default)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for other machines)."),
    sampling_rate: float = typer.Option(1.0, "--sampling-rate", help="Share of answered requests recorded (0-1)."),
    file_max_mb: float = typer.Option(64.0, "--file-max-mb", help="Rotate a log file before this size."),
    total_max_mb: float = typer.Option(1024.0, "--total-max-mb",
                                       help="Delete a model's oldest log files beyond this total."),
    queue_size: int = typer.Option(1024, "--queue-size", help="Records waiting for the disk before drops."),
) -> int:
    """Forward TensorFlow Serving's REST and gRPC APIs unchanged and record a sample of the traffic."""
    _check(upstream_rest, upstream_grpc, port, grpc_port, sampling_rate, file_max_mb, total_max_mb, queue_size)
    from servegate.serving.server.without_keras import keep_keras_out

    keep_keras_out()  # the recorder imports TensorFlow; a proxy has no use for Keras's import
    from servegate.traffic.recorder import RotationLimits
    from servegate.traffic.tap import TapSettings, run_tap

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded request otherwise
    settings = TapSettings(
        log_dir=log_dir.expanduser(), upstream_rest=upstream_rest, upstream_grpc=upstream_grpc,
        rest_port=port if upstream_rest else 0, grpc_port=grpc_port if upstream_grpc else 0, host=host,
        sampling_rate=sampling_rate, queue_size=queue_size,
        limits=RotationLimits(int(file_max_mb * (1 << 20)), int(total_max_mb * (1 << 20))))
    try:
        code = run_tap(settings)
    except OSError as exc:
        print(f"error: servegate tap: {exc.strerror or exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)
    return 0
