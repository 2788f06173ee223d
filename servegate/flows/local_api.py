"""A local Prefect API server for one ``servegate deploy`` process, started before the heavy imports.

With no ``PREFECT_API_URL``, Prefect's ephemeral mode starts a Prefect
server (uvicorn on ``prefect.server.api.server:create_app``) as a subprocess at
the first API call of a flow run, and waits for its ``/health``; to do so the
calling process imports the whole Prefect server package (FastAPI,
SQLAlchemy, the API models) only to reach the class that launches it.

:class:`LocalPrefectServer` launches the same server, with the same command
line and environment as Prefect's ``SubprocessASGIServer``, at the top of the
command, so that it boots on another core while this process imports
TensorFlow, Prefect's engine and MLflow, and without that import. Life cycle:

1. ``LocalPrefectServer.launch()`` picks a free loopback port and starts the
   subprocess (non-blocking), and beside it the warm-up of
   :mod:`servegate.flows.prefect_warmup` (read-only requests sent once the
   server answers, so that the flow's first requests find it warm);
2. ``wait_until_healthy(timeout_s)`` polls ``/api/health`` (for
   :func:`startup_timeout_s`: the user's Prefect setting, else 180 s, since a
   fresh HOME's first start creates Prefect's database); a server that
   exits with uvicorn's "address in use" status (3) is restarted on another
   port, as Prefect does; any other exit, or the timeout, raises
   :class:`~servegate.errors.OrchestrationError` with the exit status;
3. ``use()`` points this process's Prefect settings at it
   (``PREFECT_API_URL`` in the environment, then Prefect's
   ``refresh_global_settings_context()``), so that every Prefect client in the
   process — the flow engine, the log and event workers in their threads —
   talks to it;
4. ``stop()`` (registered with :mod:`atexit` by ``launch()``, so it runs
   after Prefect's workers drained their queues at interpreter exit) sends
   SIGTERM, then SIGKILL after 5 s, and ends a warm-up still running. Safe to
   call more than once.

A deploy that is SIGKILLed never runs ``stop()``; on Linux the server and its
warm-up are started with a parent-death signal
(``prctl(PR_SET_PDEATHSIG, SIGTERM)``), so the kernel ends them with their
owner and a killed deploy leaves no server behind.

The server's own output goes to this process's stderr, never its stdout: the
``--json`` output of ``servegate deploy`` stays one JSON object.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from servegate.errors import OrchestrationError
from servegate.flows import prefect_warmup
from servegate.ports import free_port

# uvicorn exits with 3 when it cannot bind its port (a race with another process); Prefect retries.
PORT_IN_USE_EXIT = 3
STOP_GRACE_S = 5.0
POLL_S = 0.05

STARTUP_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
#: How long a local Prefect server may take to answer when the user did not say
#: (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``, environment or profile). A
#: first start with a new HOME creates Prefect's database (its migrations):
#: 15-40 s on a busy 2-core machine, past Prefect's default of 20 s.
FIRST_START_TIMEOUT_S = 180


def ephemeral_mode_wanted() -> bool:
    """True when Prefect would start an ephemeral server: no API URL configured (environment or
    profile) and ephemeral mode allowed."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    return not PREFECT_API_URL.value() and bool(PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value())


def configured_startup_timeout_s() -> float | None:
    """``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` when the user set it (environment, profile,
    any of Prefect's settings sources); None when it is Prefect's default."""
    from prefect.settings import get_current_settings

    value = get_current_settings().to_environment_variables(exclude_unset=True).get(STARTUP_TIMEOUT_VAR)
    return None if value is None else float(value)


def startup_timeout_s() -> float:
    """How long to wait for a local Prefect server: the user's setting, else :data:`FIRST_START_TIMEOUT_S`."""
    configured = configured_startup_timeout_s()
    return FIRST_START_TIMEOUT_S if configured is None else configured


def allow_slow_first_start() -> None:
    """Give Prefect's own ephemeral server :data:`FIRST_START_TIMEOUT_S` to start, unless the user set a limit.

    Prefect starts that server at a flow's first API call when no
    ``PREFECT_API_URL`` is set (flows called from Python, the demo) and gives
    up after ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (default 20 s)
    with "Timed out while attempting to connect to ephemeral Prefect API
    server": on a fresh HOME that is the first database creation. Sets the
    variable in this process's environment (inherited by its children) and
    refreshes Prefect's global settings. Call it before the first flow runs.
    """
    if configured_startup_timeout_s() is not None:
        return
    from prefect.context import refresh_global_settings_context

    os.environ[STARTUP_TIMEOUT_VAR] = str(FIRST_START_TIMEOUT_S)
    refresh_global_settings_context()


def _prefect_package_parent() -> Path:
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise OrchestrationError("Prefect is not installed: cannot start a local Prefect server")
    return Path(list(spec.submodule_search_locations)[0]).parent


@dataclass
class LocalPrefectServer:
    """One Prefect API server subprocess; see the module docstring for its life cycle."""

    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)
    restarts: int = 0
    warm_up: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @classmethod
    def launch(cls) -> "LocalPrefectServer":
        server = cls()
        server._spawn()
        atexit.register(server.stop)
        return server

    def _spawn(self) -> None:
        from prefect.settings import get_current_settings

        self.port = free_port()
        # The command line and environment of Prefect's SubprocessASGIServer (ephemeral mode):
        # no UI, the ephemeral flags, and this process's Prefect settings.
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        env.pop("PREFECT_API_URL", None)  # the server itself has no API to call
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(_prefect_package_parent()), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else None,
            # launch() runs on the command's main thread, whose death is the process's death.
            preexec_fn=_end_with_parent if sys.platform.startswith("linux") else None,
        )
        self._end_warm_up()  # a restart on another port: the old port's warm-up has nothing to warm
        self.warm_up = prefect_warmup.launch(
            self.api_url, startup_timeout_s(), _end_with_parent if sys.platform.startswith("linux") else None)

    def _end_warm_up(self) -> None:
        warm_up, self.warm_up = self.warm_up, None
        if warm_up is not None and warm_up.poll() is None:
            warm_up.kill()
            warm_up.wait()

    def wait_until_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code == PORT_IN_USE_EXIT and self.restarts < 5:
                self.restarts += 1
                self._spawn()
                continue
            if code is not None:
                raise OrchestrationError(
                    f"local Prefect server on 127.0.0.1:{self.port} exited with status {code} before it answered "
                    "(its messages are above on stderr); set PREFECT_API_URL to use a running Prefect server")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                self.stop()
                raise OrchestrationError(
                    f"local Prefect server on 127.0.0.1:{self.port} did not answer within {timeout_s:.0f} s "
                    "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); set PREFECT_API_URL to use a running "
                    "Prefect server")
            time.sleep(POLL_S)

    def use(self) -> None:
        """Point every Prefect client of this process at this server."""
        from prefect.context import refresh_global_settings_context

        os.environ["PREFECT_API_URL"] = self.api_url
        refresh_global_settings_context()

    def stop(self) -> None:
        self._end_warm_up()
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """preexec_fn (Linux): SIGTERM this child when the thread that started it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
