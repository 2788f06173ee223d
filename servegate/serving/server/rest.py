"""The REST API on Starlette: TensorFlow Serving's paths, bodies and error codes.

TensorFlow Serving's URLs put a colon verb after a path parameter
(``/v1/models/NAME:predict``), which Starlette's path converters cannot split,
so one catch-all route matches TensorFlow Serving's own two regular
expressions. Session runs and JSON work go to a dedicated thread pool
(``--rest_api_num_threads``) so the event loop stays free; each request is
bounded by ``--rest_api_timeout_in_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time

import orjson
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servegate.serving.server import json_api
from servegate.serving.server.manager import ServableManager
from servegate.serving.server.metrics import CONTENT_TYPE, METRICS, ServingMetrics
from servegate.serving.server.status import StatusError

_GET = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?(?P<metadata>/metadata)?/?$"
)
_POST = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>predict|classify|regress)$"
)
_VERBS: dict[str, Callable[[Any, Any], dict]] = {
    "predict": json_api.predict_body,
    "classify": json_api.classify_body,
    "regress": json_api.regress_body,
}


def _json(body: dict, status: int = 200) -> Response:
    # allow_nan: TensorFlow Serving prints NaN/Infinity for such predictions rather than failing.
    return Response(json.dumps(body, allow_nan=True), status_code=status, media_type="application/json")


def _parse_json(raw: bytes) -> Any:
    """Parse a request body: orjson (several times faster on large ``instances``), falling back to
    the standard library for the NaN/Infinity literals TensorFlow Serving accepts but orjson rejects."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatusError("INVALID_ARGUMENT", f"JSON Parse error: {exc}") from None


def _error(exc: StatusError) -> Response:
    return _json({"error": exc.message}, exc.http_status)


def _status_of(manager: ServableManager, name: str, version: int | None, label: str | None) -> dict:
    return json_api.status_body(manager.status(name, version, label))


def _metadata_of(manager: ServableManager, name: str, version: int | None, label: str | None) -> dict:
    with manager.servable(name, version, label) as servable:
        return json_api.metadata_body(servable)


def _call(manager: ServableManager, verb: str, name: str, version: int | None, label: str | None,
          raw: bytes) -> dict:
    body = _parse_json(raw)
    with manager.servable(name, version, label) as servable:
        return _VERBS[verb](body, servable)


def _stopping_at_shutdown(executor: ThreadPoolExecutor):
    """Starlette's lifespan (its on_shutdown hooks are gone in Starlette 1.0): stop the workers at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    return lifespan


def build_app(manager: ServableManager, num_threads: int = 16, timeout_ms: int = 30000, *,
              metrics: ServingMetrics = METRICS, metrics_path: str | None = None) -> Starlette:
    """The Starlette application; ``app.state.executor`` is shut down with the app.

    ``metrics_path`` (from ``--monitoring_config_file``) serves the Prometheus
    page there; requests to it are not counted, as in TensorFlow Serving.
    """
    executor = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="rest")
    timeout_s = timeout_ms / 1000.0

    async def in_pool(fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, fn, *args), timeout_s)
        except asyncio.TimeoutError:
            raise StatusError("DEADLINE_EXCEEDED", f"Request timed out after {timeout_ms} ms") from None

    async def dispatch(request: Request, path: str, route: dict) -> Response:
        if request.method == "GET" and (m := _GET.match(path)):
            route.update(name=m["name"])
            version = int(m["version"]) if m["version"] else None
            fn = _metadata_of if m["metadata"] else _status_of
            return _json(await in_pool(fn, manager, m["name"], version, m["label"]))
        if request.method == "POST" and (m := _POST.match(path)):
            route.update(name=m["name"], api=m["verb"])
            version = int(m["version"]) if m["version"] else None
            raw = await request.body()
            return _json(await in_pool(_call, manager, m["verb"], m["name"], version, m["label"], raw))
        raise StatusError("NOT_FOUND", f"Malformed request: {request.method} {path}")

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        if metrics_path is not None and path == metrics_path:
            return Response(metrics.render(), media_type=CONTENT_TYPE)
        started = time.perf_counter()
        # TensorFlow Serving labels a REST request with the model name and verb it parsed from the URL
        # ("" when none, e.g. a status GET has no verb).
        route = {"name": "", "api": ""}
        status = "UNKNOWN"  # what an unexpected exception (HTTP 500) counts as
        try:
            response = await dispatch(request, path, route)
            status = "OK"
            return response
        except StatusError as exc:
            status = exc.code
            return _error(exc)
        finally:
            metrics.record_request(route["name"], status, route["api"], "REST", time.perf_counter() - started)

    app = Starlette(
        # Every method reaches `endpoint`, so that anything unknown gets TensorFlow Serving's JSON 404.
        routes=[Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])],
        lifespan=_stopping_at_shutdown(executor),
    )
    app.state.executor = executor
    return app
