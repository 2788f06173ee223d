"""Warm a freshly started local Prefect server with read-only requests, from a process of its own.

A Prefect server does two costly things lazily, at the first request that
needs them, not at start-up: FastAPI (0.137 and later) builds each included
router's routes (their dependants and Pydantic schemas) the first time a
request is matched against them, and the first database query opens the
engine's connection and configures SQLAlchemy's ORM mappers. Measured on a
local server healthy for 3 s (docs/performance.md, "Prefect's flow-run
start"): the first ``GET /api/admin/version`` took ~0.33 CPU-s of the server
(the second 0.01), the first query (``POST /api/flows/filter``) ~0.21 CPU-s;
every other request after those two cost 0.01-0.04 CPU-s, first or not. In a
deploy those first requests are the flow engine's: its API version check and
the flow run's creation, on the command's critical path.

:func:`launch` starts this file as a script (``python -I -S``: the standard
library only, no site-packages, so that it neither imports nor waits on
anything the command's process imports) as soon as the server process is
spawned. It polls the server's ``/health`` and, once it answers, sends
:data:`WARM_UP_REQUESTS`: reads that create, change and show nothing (no
flow, flow run, log or event appears in the Prefect UI). It prints one line
per request (``GET /admin/version 200``) and exits; a failure is its own
(exit 1), never the deploy's, whose own requests make every check as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Callable

#: (method, path under the API URL, JSON body or None): the version check's route (it builds every router's
#: routes, the admin router being among the last), then the first queries of the tables a flow run reads.
WARM_UP_REQUESTS: tuple[tuple[str, str, dict | None], ...] = (
    ("GET", "/admin/version", None),
    ("POST", "/flows/filter", {"limit": 1}),
    ("POST", "/flow_runs/filter", {"limit": 1}),
    ("POST", "/task_runs/filter", {"limit": 1}),
)
HEALTH_POLL_S = 0.1
REQUEST_TIMEOUT_S = 60.0


def launch(api_url: str, timeout_s: float, preexec_fn: Callable[[], None] | None) -> subprocess.Popen:
    """Start the warm-up of the server at ``api_url``; it gives up after ``timeout_s`` without an answer."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", __file__, api_url, str(timeout_s)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=preexec_fn)


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
            reply.read()
            return reply.status
    except urllib.error.HTTPError as refused:  # answered: the route was matched, the work done
        return refused.code


def wait_healthy(api_url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _status(urllib.request.Request(f"{api_url}/health")) == 200:
                return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(HEALTH_POLL_S)
    return False


def warm(api_url: str) -> list[str]:
    """Send :data:`WARM_UP_REQUESTS`; one ``METHOD PATH STATUS`` line each."""
    done = []
    for method, path, body in WARM_UP_REQUESTS:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{api_url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        done.append(f"{method} {path} {_status(request)}")
    return done


def main(argv: list[str]) -> int:
    api_url, timeout_s = argv[0], float(argv[1])
    if not wait_healthy(api_url, timeout_s):
        return 1
    try:
        for line in warm(api_url):
            print(line, flush=True)
    except (urllib.error.URLError, OSError):  # the server went away (the command ended): nothing to warm
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
