"""TensorFlow Serving's command-line flags, parsed for the bundled server.

The names, forms (``--flag=value`` or ``--flag value``) and defaults are
TensorFlow Serving's own, so that a runner can start either server with the
same command line. Two additions, because TensorFlow Serving always binds
every interface and servegate must not by default:

- ``--bind_address`` (default ``127.0.0.1``): the address both ports listen on;
  ``0.0.0.0`` inside a container.
- ``--rest_api_bind_address`` / ``--grpc_bind_address``: per-port overrides.

An unknown flag is an error (exit status 2 with argparse's message), as it is
for ``tensorflow_model_server``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from servegate.errors import ConfigError


@dataclass(frozen=True)
class ServerFlags:
    """The parsed command line; ports of 0 mean "off" (as in TensorFlow Serving)."""

    grpc_port: int
    rest_api_port: int
    model_name: str
    model_base_path: str | None
    model_config_file: Path | None
    file_system_poll_wait_seconds: float
    rest_api_timeout_in_ms: int
    rest_api_num_threads: int
    grpc_max_threads: int
    rest_api_bind_address: str
    grpc_bind_address: str
    max_num_load_retries: int
    load_retry_interval_micros: int
    allow_version_labels_for_unavailable_models: bool
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    monitoring_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    request_log_queue_size: int = 1024
    request_log_file_max_bytes: int = 64 << 20
    request_log_total_max_bytes: int = 1 << 30


def _bool(text: str) -> bool:
    # TensorFlow Serving's flags take true/false (and bare --flag for true).
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m servegate.serving",
        description="servegate's bundled TensorFlow-Serving-compatible model server.",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--port", type=int, default=8500, help="gRPC port (0: no gRPC). Default 8500.")
    add("--rest_api_port", type=int, default=0, help="REST port (0: no REST, the default).")
    add("--model_name", default="default", help="Model name (with --model_base_path). Default 'default'.")
    add("--model_base_path", default=None, help="Directory of numbered versions of the model.")
    add("--model_config_file", type=Path, default=None, help="Text-format ModelServerConfig file.")
    add("--file_system_poll_wait_seconds", type=float, default=1.0,
        help="Seconds between polls of each base path for new versions (0: only at start). Default 1.")
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="Timeout of a REST request. Default 30000.")
    add("--rest_api_num_threads", type=int, default=16, help="Threads that run REST requests' sessions.")
    add("--grpc_max_threads", type=int, default=16, help="Threads that serve gRPC requests.")
    add("--bind_address", default="127.0.0.1",
        help="Address both ports listen on (servegate addition; 0.0.0.0 inside a container). Default 127.0.0.1.")
    add("--rest_api_bind_address", default=None, help="REST listen address (default: --bind_address).")
    add("--grpc_bind_address", default=None, help="gRPC listen address (default: --bind_address).")
    add("--max_num_load_retries", type=int, default=5, help="Retries of a failed version load. Default 5.")
    add("--load_retry_interval_micros", type=int, default=60_000_000,
        help="Microseconds between load retries. Default 60 s.")
    add("--allow_version_labels_for_unavailable_models", type=_bool, nargs="?", const=True, default=False,
        help="Allow a label to name a version that is not AVAILABLE.")
    add("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
        help="Replay <version>/assets.extra/tf_serving_warmup_requests before a version becomes AVAILABLE. "
             "Default true.")
    add("--num_request_iterations_for_warmup", type=int, default=1,
        help="Times each warm-up request is replayed (used only if > 0). Default 1.")
    add("--monitoring_config_file", type=Path, default=None,
        help="Text-format MonitoringConfig, e.g. prometheus_config { enable: true path: "
             "\"/monitoring/prometheus/metrics\" } (served on the REST port).")
    add("--model_config_file_poll_wait_seconds", type=float, default=0.0,
        help="Seconds between re-reads of --model_config_file (0: read once, the default). The bundled server "
             "applies each model's logging_config from a re-read file.")
    add("--request_log_queue_size", type=int, default=1024,
        help="Requests waiting to be written to the request log; beyond it they are dropped and counted "
             "(servegate addition). Default 1024.")
    add("--request_log_file_max_mb", type=float, default=64.0,
        help="A request log file is rotated before it passes this size (servegate addition). Default 64.")
    add("--request_log_total_max_mb", type=float, default=1024.0,
        help="The oldest request log files of a prefix are deleted to keep the total under this size "
             "(servegate addition). Default 1024.")
    return parser


def parse_flags(argv: list[str] | None) -> ServerFlags:
    """Parse ``argv``; exits with status 2 and a usage message on an unknown or malformed flag.

    Raises :class:`ConfigError` for flags that parse but make no sense together.
    """
    args = build_parser().parse_args(argv)
    if args.model_config_file is None and not args.model_base_path:
        raise ConfigError("either --model_base_path or --model_config_file must be given")
    # Like TensorFlow Serving, --model_config_file wins over --model_name/--model_base_path
    # when both are given (the official image always passes the latter two).
    if args.port == 0 and args.rest_api_port == 0:
        raise ConfigError("both --port and --rest_api_port are 0: the server would listen on nothing")
    for flag in ("port", "rest_api_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise ConfigError(f"--{flag}={value}: expected a port number between 0 and 65535")
    if args.port != 0 and args.port == args.rest_api_port:
        raise ConfigError(f"--port and --rest_api_port are both {args.port}: they must differ")
    if args.file_system_poll_wait_seconds < 0:
        raise ConfigError("--file_system_poll_wait_seconds must be >= 0")
    if args.max_num_load_retries < 0 or args.load_retry_interval_micros < 0:
        raise ConfigError("--max_num_load_retries and --load_retry_interval_micros must be >= 0")
    if args.rest_api_timeout_in_ms <= 0:
        raise ConfigError("--rest_api_timeout_in_ms must be > 0")
    if args.monitoring_config_file is not None and args.rest_api_port == 0:
        # TensorFlow Serving silently ignores the file then; a configured value must not be dropped.
        raise ConfigError(
            f"--monitoring_config_file={args.monitoring_config_file}: metrics are served on the REST port, "
            "but --rest_api_port is 0 (expected a REST port)"
        )
    _check_request_log_flags(args)
    return ServerFlags(
        grpc_port=args.port,
        rest_api_port=args.rest_api_port,
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        model_config_file=args.model_config_file,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        rest_api_num_threads=max(1, args.rest_api_num_threads),
        grpc_max_threads=max(1, args.grpc_max_threads),
        rest_api_bind_address=args.rest_api_bind_address or args.bind_address,
        grpc_bind_address=args.grpc_bind_address or args.bind_address,
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_micros=args.load_retry_interval_micros,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        enable_model_warmup=args.enable_model_warmup,
        # TensorFlow Serving: "This value is used only if > 0" (otherwise the default of 1).
        num_request_iterations_for_warmup=max(1, args.num_request_iterations_for_warmup),
        monitoring_config_file=args.monitoring_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        request_log_queue_size=args.request_log_queue_size,
        request_log_file_max_bytes=int(args.request_log_file_max_mb * (1 << 20)),
        request_log_total_max_bytes=int(args.request_log_total_max_mb * (1 << 20)),
    )


def _check_request_log_flags(args: argparse.Namespace) -> None:
    if args.model_config_file_poll_wait_seconds < 0:
        raise ConfigError("--model_config_file_poll_wait_seconds must be >= 0")
    if args.request_log_queue_size < 1:
        raise ConfigError(f"--request_log_queue_size={args.request_log_queue_size}: expected at least 1")
    if not 0 < args.request_log_file_max_mb <= args.request_log_total_max_mb:
        raise ConfigError(
            f"--request_log_file_max_mb={args.request_log_file_max_mb} and --request_log_total_max_mb="
            f"{args.request_log_total_max_mb}: expected 0 < file max <= total max"
        )
