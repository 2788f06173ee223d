"""``servegate tap``: a recording proxy in front of a stock TensorFlow Serving.

Stock TensorFlow Serving cannot log requests (it ships no log collector and
refuses any ``logging_config``), so the tap sits in front of it: clients talk
to the tap's REST and gRPC ports exactly as to TensorFlow Serving; each
request is forwarded unchanged and the answer comes back unchanged (status,
body, content type; gRPC status code, details and trailing metadata). A sample
of the answered prediction requests is written as ``PredictionLog`` TFRecord
files, ``<log dir>/<model>-*.tfrecord``, by ``tap_log.TapLog``.

The tap's own counters (records written, dropped) are at
``/servegate/tap/metrics`` on its REST port, a path TensorFlow Serving does not
use, so the upstream's own metrics path is still forwarded.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import threading
from collections.abc import AsyncIterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from servegate.serving.server.metrics import CONTENT_TYPE
from servegate.traffic.recorder import RotationLimits
from servegate.traffic.tap_log import RestCall, TapLog

log = logging.getLogger("servegate.traffic")

TAP_METRICS_PATH = "/servegate/tap/metrics"
_PREDICTION = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>predict|classify|regress)$"
)
# Hop-by-hop headers and those httpx sets itself; everything else goes through.
_DROP_REQUEST = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding",
                 "upgrade", "te", "trailer", "proxy-connection"}
_DROP_RESPONSE = {"content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding", "date",
                  "server"}
_GRPC_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
                 ("grpc.http2.lookahead_bytes", 16 << 20)]


@dataclass(frozen=True)
class TapSettings:
    """Where the tap listens, where it forwards to, what it records."""

    log_dir: Path
    upstream_rest: str | None
    upstream_grpc: str | None
    rest_port: int
    grpc_port: int
    host: str = "127.0.0.1"
    sampling_rate: float = 1.0
    queue_size: int = 1024
    limits: RotationLimits = RotationLimits()
    timeout_s: float = 30.0


def build_rest_app(upstream: str, tap_log: TapLog, timeout_s: float = 30.0) -> Starlette:
    """The REST side: every method and path forwarded; answered predictions sampled into the log."""
    client = httpx.AsyncClient(base_url=upstream.rstrip("/"), timeout=timeout_s,
                               limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        if path == TAP_METRICS_PATH:
            return Response(tap_log.metrics.render(), media_type=CONTENT_TYPE)
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        try:
            answer = await client.request(request.method, path, params=request.url.query or None,
                                          content=body, headers=headers)
        except httpx.HTTPError as exc:
            return JSONResponse({"error": f"servegate tap: upstream {upstream} did not answer: {exc}"},
                                status_code=502)
        if answer.status_code == 200 and request.method == "POST" and tap_log.sampled():
            _record_rest(tap_log, path, body, answer.content)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP_RESPONSE}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Starlette 1.x has no on_shutdown hooks: the upstream client closes when the app's lifespan ends.
        try:
            yield
        finally:
            await client.aclose()

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])],
                     lifespan=lifespan)


def _record_rest(tap_log: TapLog, path: str, body: bytes, answer: bytes) -> None:
    try:
        match = _PREDICTION.match(path)
        if match is None:
            return
        version = int(match["version"]) if match["version"] else None
        tap_log.rest(RestCall(match["verb"], match["name"], version, match["label"], body, answer))
    except Exception:  # the client's answer must not depend on its recording
        log.exception("tap: could not record a REST request to %s", path)


class ForwardingHandler(grpc.GenericRpcHandler):
    """Every unary gRPC method forwarded as raw bytes; answered prediction calls sampled into the log."""

    def __init__(self, channel: grpc.Channel, tap_log: TapLog) -> None:
        self._channel = channel
        self._tap_log = tap_log

    def service(self, handler_call_details):
        method = handler_call_details.method
        call = self._channel.unary_unary(method)  # no (de)serializers: bytes in, bytes out

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = [(k, v) for k, v in context.invocation_metadata() if not k.startswith(":")]
            try:
                answer, _ = call.with_call(request, timeout=context.time_remaining(), metadata=metadata)
            except grpc.RpcError as exc:
                context.set_trailing_metadata(tuple(exc.trailing_metadata() or ()))
                context.abort(exc.code(), exc.details() or "")
            if self._tap_log.sampled():
                try:
                    self._tap_log.grpc(method, request, answer)
                except Exception:
                    log.exception("tap: could not record a gRPC call to %s", method)
            return answer

        return grpc.unary_unary_rpc_method_handler(forward)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def run_tap(settings: TapSettings) -> int:
    """Serve until SIGINT/SIGTERM; the exit status (ports that cannot be bound raise ``OSError``)."""
    import uvicorn

    tap_log = TapLog(settings.log_dir, settings.sampling_rate, settings.upstream_rest,
                     queue_size=settings.queue_size, limits=settings.limits)
    stop = threading.Event()
    # Installed before uvicorn's: uvicorn re-raises the signal it caught once it has shut down,
    # and this handler turns that into a clean exit (status 0) after the files are closed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    grpc_server = channel = None
    rest_sock = _listen(settings.host, settings.rest_port) if settings.upstream_rest and settings.rest_port else None
    try:
        if settings.upstream_grpc and settings.grpc_port:
            channel = grpc.insecure_channel(settings.upstream_grpc, options=_GRPC_OPTIONS)
            grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="tap-grpc"),
                                      options=_GRPC_OPTIONS + [("grpc.so_reuseport", 0)])
            grpc_server.add_generic_rpc_handlers((ForwardingHandler(channel, tap_log),))
            address = f"[{settings.host}]:{settings.grpc_port}" if ":" in settings.host \
                else f"{settings.host}:{settings.grpc_port}"
            if not grpc_server.add_insecure_port(address):
                raise OSError(f"cannot listen for gRPC on {address} (port in use?)")
            grpc_server.start()
            log.info("servegate tap: gRPC on %s -> %s", address, settings.upstream_grpc)
        if rest_sock is not None:
            app = build_rest_app(settings.upstream_rest, tap_log, settings.timeout_s)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                                   timeout_graceful_shutdown=5))
            log.info("servegate tap: REST on %s:%d -> %s", settings.host, settings.rest_port, settings.upstream_rest)
            server.run(sockets=[rest_sock])
        else:
            stop.wait()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=2).wait(5)
        if channel is not None:
            channel.close()
        tap_log.close()
    log.info("servegate tap stopped")
    return 0
