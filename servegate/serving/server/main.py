"""The bundled server's entry point: flags -> first loads -> ports open -> serve until a signal.

Order matters and follows TensorFlow Serving: the ports stay closed until the
first load of every model finished, so "connection refused" means "not ready
yet" to a runner; a model that cannot become available makes the process exit
with status 1 (flag and config errors: status 2) instead of serving nothing.

TensorFlow is imported only after the flags parsed, so ``--help`` and flag
errors answer at once.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading

from servegate.errors import ConfigError
from servegate.serving.server.flags import ServerFlags, parse_flags
from servegate.serving.server.model_config import ModelConfig, load_model_config_file, single_model
from servegate.serving.server.monitoring_config import MonitoringSettings, load_monitoring_config_file

log = logging.getLogger("servegate.serving.server")


def _models(flags: ServerFlags) -> list[ModelConfig]:
    if flags.model_config_file is not None:
        return load_model_config_file(flags.model_config_file)
    return single_model(flags.model_name, flags.model_base_path)


def _monitoring(flags: ServerFlags) -> MonitoringSettings:
    if flags.monitoring_config_file is None:
        return MonitoringSettings()
    return load_monitoring_config_file(flags.monitoring_config_file)


def _bind_socket(host: str, port: int, what: str = "REST") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only for sockets
    # that say they are TCP; without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _preflight(flags: ServerFlags, models: list[ModelConfig]) -> bool:
    """Fail fast, before TensorFlow's import and the first loads: a missing base path
    or a taken port would only surface after them. False (logged) when start-up must stop."""
    for model in models:
        if not model.base_path.is_dir():
            log.error("Failed to start server. Error: Could not find base path %s for servable %s",
                      model.base_path, model.name)
            return False
    for what, host, port in (("REST", flags.rest_api_bind_address, flags.rest_api_port),
                             ("gRPC", flags.grpc_bind_address, flags.grpc_port)):
        if port:
            try:
                _bind_socket(host, port, what).close()
            except OSError as exc:
                log.error("Failed to start server. Error: %s", exc)
                return False
    return True


def _build_manager(flags: ServerFlags, models: list[ModelConfig]):
    from servegate.serving.server.loader import load_version  # TensorFlow: seconds to import
    from servegate.serving.server.manager import ServableManager
    from servegate.serving.server.warmup_replay import warmed_loader

    loader = load_version
    if flags.enable_model_warmup:
        # As in TensorFlow Serving, the warm-up is part of the load: before AVAILABLE, and a failure fails it.
        loader = warmed_loader(load_version, flags.num_request_iterations_for_warmup)
    return ServableManager(
        models,
        loader,
        poll_wait_s=flags.file_system_poll_wait_seconds,
        max_num_load_retries=flags.max_num_load_retries,
        load_retry_interval_s=flags.load_retry_interval_micros / 1e6,
        allow_version_labels_for_unavailable_models=flags.allow_version_labels_for_unavailable_models,
    )


def run(argv: list[str] | None = None) -> int:
    """Run the server in this process until SIGINT/SIGTERM; returns the exit status."""
    try:
        flags = parse_flags(argv)
        models = _models(flags)
        monitoring = _monitoring(flags)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname).1s %(name)s] %(message)s"
    )
    if not _preflight(flags, models):
        return 1
    from servegate.serving.server.manager import StartupError

    manager = _build_manager(flags, models)
    stop = threading.Event()
    # Until the REST server installs its own handlers, SIGTERM ends start-up cleanly too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop.set(), manager.stop()))
    try:
        manager.start()
    except StartupError as exc:
        log.error("Failed to start server. Error: %s", exc)
        manager.stop()
        return 1
    if stop.is_set():
        return 0
    return _serve(manager, flags, monitoring, stop, models)


def _request_logging(flags: ServerFlags, models: list[ModelConfig], stop: threading.Event):
    """The request log of models with a ``logging_config``; the config file re-read when asked to."""
    if flags.model_config_file is None:
        return None
    from servegate.serving.server.request_logging import RequestLogging, watch_config_file
    from servegate.traffic.recorder import RotationLimits

    request_log = RequestLogging(
        models, queue_size=flags.request_log_queue_size,
        limits=RotationLimits(flags.request_log_file_max_bytes, flags.request_log_total_max_bytes))
    if flags.model_config_file_poll_wait_seconds > 0:
        threading.Thread(target=watch_config_file, name="config-file-poll", daemon=True,
                         args=(flags.model_config_file, flags.model_config_file_poll_wait_seconds,
                               request_log, models, stop)).start()
    return request_log


def _serve(manager, flags: ServerFlags, monitoring: MonitoringSettings, stop: threading.Event,
           models: list[ModelConfig]) -> int:
    """Open the ports and serve until a signal; the exit status."""
    grpc_server = None
    request_log = _request_logging(flags, models, stop)
    try:
        if flags.grpc_port:
            from servegate.serving.server.grpc_service import build_grpc_server

            address = _fmt(flags.grpc_bind_address, flags.grpc_port)
            try:
                grpc_server, bound = build_grpc_server(manager, address, flags.grpc_max_threads,
                                                       request_log=request_log)
            except RuntimeError as exc:
                bound = 0
                log.error("gRPC: %s", exc)
            if not bound:
                log.error("Failed to start server. Error: cannot listen for gRPC on %s (port in use?)", address)
                return 1
            grpc_server.start()
            log.info("Running gRPC ModelServer at %s ...", address)
        if flags.rest_api_port:
            try:
                sock = _bind_socket(flags.rest_api_bind_address, flags.rest_api_port)
            except OSError as exc:
                log.error("Failed to start server. Error: %s", exc)
                return 1
            _serve_rest(manager, flags, sock, monitoring, request_log)
        else:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=2).wait(5)
        manager.stop()
        stop.set()
        if request_log is not None:
            request_log.close()
    log.info("Server stopped")
    return 0


def _serve_rest(manager, flags: ServerFlags, sock: socket.socket, monitoring: MonitoringSettings,
                request_log=None) -> None:
    """Serve REST on ``sock`` until uvicorn's SIGINT/SIGTERM handlers end it."""
    import uvicorn

    from servegate.serving.server.rest import build_app

    metrics_path = monitoring.prometheus_path if monitoring.prometheus_enabled else None
    app = build_app(manager, flags.rest_api_num_threads, flags.rest_api_timeout_in_ms, metrics_path=metrics_path,
                    request_log=request_log)
    if metrics_path:
        log.info("Exporting Prometheus metrics at:%s%s", _fmt(flags.rest_api_bind_address, flags.rest_api_port),
                 metrics_path)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    log.info("Exporting HTTP/REST API at:%s ...", _fmt(flags.rest_api_bind_address, flags.rest_api_port))
    server.run(sockets=[sock])
