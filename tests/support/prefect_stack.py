"""Real Prefect processes for the tests, started the way docs/deploying-with-prefect.md tells users:
``prefect server start``, ``prefect work-pool create``, ``prefect deploy``, ``prefect worker start``, from
this venv, with a brand-new HOME (no ``~/.prefect``, ``~/.servegate``). Every process logs to a file that
the tests read back and search for tracebacks (tests/support/logs.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import REPO, VENV_BIN, fresh_env
from tests.support.ports import free_port

PREFECT = str(VENV_BIN / "prefect")
POOL = "servegate-process"
# Prefect's own first start creates its database: slow on a busy 2-core machine.
SERVER_START_S = 240
# docs/deploying-with-prefect.md starts the worker with PREFECT_WORKER_QUERY_SECONDS=1: a run waits
# at most ~1.3 s for the worker's next poll instead of up to ~13 s.
WORKER_QUERY_SECONDS = "1"


def stop(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the process group (the server's uvicorn, the worker's flow runs), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def wait_http(url: str, proc: subprocess.Popen, log: Path, deadline_s: float) -> float:
    """Wait until ``url`` answers 200 while ``proc`` (logging to ``log``) runs; returns the seconds it took."""
    import httpx

    started = time.monotonic()
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"{' '.join(map(str, proc.args[:3]))} exited {proc.returncode}:\n"
                                 f"{log.read_text()[-4000:]}")
        if time.monotonic() - started > deadline_s:
            raise AssertionError(f"{url} did not answer within {deadline_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@dataclass
class PrefectStack:
    """``prefect server start`` (and optionally a process worker) in one fresh HOME; logs in ``logs``
    (default: the HOME)."""

    home: Path
    port: int = field(default_factory=free_port)
    logs: Path | None = None
    server: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return fresh_env(self.home, {"PREFECT_API_URL": self.api, "PWD": str(REPO)})

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def server_log(self) -> Path:
        return (self.logs or self.home) / "server.log"

    @property
    def worker_log(self) -> Path:
        return (self.logs or self.home) / "worker.log"

    def _spawn(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen([PREFECT, *args], env={**self.env, **(env or {})}, cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def start_server(self) -> float:
        """Start the server, wait for /api/health; returns the seconds it took."""
        self.server = self._spawn(["server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                  self.server_log)
        return wait_http(f"{self.api}/health", self.server, self.server_log, SERVER_START_S)

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a ``prefect`` CLI command in the checkout; fail with its output when it fails."""
        done = subprocess.run([PREFECT, *args], env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, (f"prefect {' '.join(args)}: exit {done.returncode}\n"
                                      f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def register(self, *deployments: str) -> None:
        """``prefect work-pool create`` and ``prefect deploy`` (all of prefect.yaml, or the named ones)."""
        self.prefect("work-pool", "create", POOL, "--type", "process")
        names = [arg for name in deployments for arg in ("--name", name)] or ["--all"]
        self.prefect("--no-prompt", "deploy", *names)

    def start_worker(self, query_seconds: str | None = WORKER_QUERY_SECONDS) -> None:
        """``prefect worker start`` as the docs start it: polling every ``query_seconds`` (None: Prefect's
        default, 10 s)."""
        env = {"PREFECT_WORKER_QUERY_SECONDS": query_seconds} if query_seconds else None
        self.worker = self._spawn(["worker", "start", "--pool", POOL], self.worker_log, env)

    def post(self, path: str, body: dict) -> list | dict:
        import httpx

        reply = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def deployment_id(self, flow_name: str, name: str) -> str:
        import httpx

        reply = httpx.get(f"{self.api}/deployments/name/{flow_name}/{name}", timeout=30)
        reply.raise_for_status()
        return reply.json()["id"]

    def close(self) -> None:
        # the worker first: a worker whose server is gone logs connection tracebacks
        for proc in (self.worker, self.server):
            if proc is not None:
                stop(proc)


@contextmanager
def users_prefect(home: Path, *deployments: str) -> Iterator[PrefectStack]:
    """A user's Prefect as docs/deploying-with-prefect.md sets it up in a brand-new ``home``: the server,
    ``prefect deploy`` of ``deployments`` (all of prefect.yaml when none) and a worker; stopped afterwards."""
    stack = PrefectStack(home=home)
    home.mkdir(parents=True, exist_ok=True)
    try:
        stack.start_server()
        stack.register(*deployments)
        stack.start_worker()
        yield stack
    finally:
        stack.close()
