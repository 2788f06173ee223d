"""Real Prefect processes for the tests, started the way docs/deploying-with-prefect.md tells users:
``prefect server start``, ``prefect work-pool create``, ``prefect deploy``, ``prefect worker start``, from
this venv, with a brand-new HOME (no ``~/.prefect``, ``~/.servegate``). Every process logs to a file that
the tests read back and search for tracebacks."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PREFECT = str(VENV_BIN / "prefect")
POOL = "servegate-process"
# Prefect's own first start creates its database: slow on a busy 2-core machine.
SERVER_START_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_env(home: Path, port: int) -> dict[str, str]:
    """A user's shell on a fresh machine: a new HOME, the venv activated, this checkout as $PWD."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "SERVEGATE_", "MLFLOW_"))}
    env.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PWD=str(REPO),
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               TF_CPP_MIN_LOG_LEVEL="2")
    return env


_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\| ERROR +\||database is locked|sqlalchemy\.exc\.")
_ENTRY_START = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \|")


def _entries(log: str) -> list[str]:
    """The log split into entries: a timestamped line and the lines (a traceback) up to the next one."""
    entries: list[list[str]] = []
    for line in log.splitlines():
        if _ENTRY_START.match(line) or not entries:
            entries.append([line])
        else:
            entries[-1].append(line)
    return ["\n".join(entry) for entry in entries]


def problems(log: str, context: int = 14) -> list[str]:
    """Each log entry with a traceback or an error (its first lines: what a test failure shows)."""
    return ["\n".join(entry.splitlines()[:context]) for entry in _entries(log) if _TRACEBACK.search(entry)]


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


@dataclass
class PrefectStack:
    """``prefect server start`` (and optionally a process worker) in one fresh HOME."""

    home: Path
    port: int = field(default_factory=free_port)
    server: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return fresh_env(self.home, self.port)

    @property
    def api(self) -> str:
        return self.env["PREFECT_API_URL"]

    @property
    def server_log(self) -> Path:
        return self.home / "server.log"

    @property
    def worker_log(self) -> Path:
        return self.home / "worker.log"

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen([PREFECT, *args], env=self.env, cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def start_server(self) -> float:
        """Start the server, wait for /api/health; returns the seconds it took."""
        import httpx

        started = time.monotonic()
        self.server = self._spawn(["server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                  self.server_log)
        while True:
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if self.server.poll() is not None:
                raise AssertionError(f"prefect server exited {self.server.returncode}:\n{self.server_log.read_text()}")
            if time.monotonic() - started > SERVER_START_S:
                raise AssertionError(f"prefect server did not answer within {SERVER_START_S} s:\n"
                                     f"{self.server_log.read_text()[-3000:]}")
            time.sleep(0.5)

    def prefect(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a ``prefect`` CLI command in the checkout; fail with its output when it fails."""
        done = subprocess.run([PREFECT, *args], env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def register(self, *deployments: str) -> None:
        """``prefect work-pool create`` and ``prefect deploy`` (all of prefect.yaml, or the named ones)."""
        self.prefect("work-pool", "create", POOL, "--type", "process")
        names = [arg for name in deployments for arg in ("--name", name)] or ["--all"]
        self.prefect("--no-prompt", "deploy", *names)

    def start_worker(self) -> None:
        self.worker = self._spawn(["worker", "start", "--pool", POOL], self.worker_log)

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
