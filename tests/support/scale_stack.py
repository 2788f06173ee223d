"""The scaled-out setup of docs/scaling.md, for real: a Prefect server, an MLflow tracking server,
Prefect process workers in containers built from the repository's Dockerfile sharing one store,
and a production bundled server (in a container from the same image) watching the store.

Every server is started the way docs/scaling.md tells users (``prefect server start``,
``mlflow server --backend-store-uri sqlite:/// --artifacts-destination --serve-artifacts``,
``prefect worker start --pool P --type process`` in ``docker run``); each logs to a file the test
searches for tracebacks. Containers use the host's network and process namespaces (``--network
host --pid host``), so processes in every container and on the host judge each other's pids alike:
see docs/scaling.md, "Process identity".
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import REPO, VENV_BIN
from tests.support.ports import free_port
from tests.support.prefect_stack import PrefectStack, stop, wait_http

IMAGE = "servegate-test/servegate:local"
POOL = "scale-pool"
LABEL = "servegate.test=scale"
ENGINE = "python -m servegate.flows.engine"
_ENTRY = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \|", re.MULTILINE)


def without_known_prefect_sqlite_lock(text: str) -> str:
    """A Prefect server log without its SQLite "database is locked" entries.

    Prefect 3.7.2's server on SQLite logs them (with a traceback) while two or more workers poll one
    pool: ``mark_deployments_ready`` (PrefectHQ/prefect#23051, fixed by PrefectHQ/prefect#22967 in a
    later release) and, rarer, the worker heartbeat's insert. Runs are not affected (the test checks
    every run's state). docs/scaling.md tells users to give several workers a PostgreSQL-backed server.
    Every other entry is still judged.
    """
    starts = [m.start() for m in _ENTRY.finditer(text)] + [len(text)]
    entries = [text[:starts[0]]] + [text[a:b] for a, b in zip(starts, starts[1:])]
    return "".join(e for e in entries if "sqlite3.OperationalError: database is locked" not in e)


def build_image() -> float:
    """scripts/build-image.sh on a Debian base bootstrapped here, from a wheelhouse; returns seconds."""
    started = time.monotonic()
    done = subprocess.run([str(REPO / "scripts" / "build-image.sh"), "--local-base", "--wheelhouse", "--tag", IMAGE],
                          cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, f"build-image.sh failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return time.monotonic() - started


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done


class ContainerStack:
    """What a stack of host processes and containers shares: its containers' state and logs, and its
    teardown (each container's log kept under ``logs``, containers removed, processes stopped, Prefect
    closed). Subclasses hold ``containers``, ``procs``, ``logs`` and ``prefect``."""

    def check_running(self, names: list[str]) -> None:
        for name in names:
            state = docker("inspect", "-f", "{{.State.Status}}", name, check=False).stdout.strip()
            assert state == "running", f"container {name} is {state or 'gone'}:\n{self.container_log(name)[-4000:]}"

    def container_log(self, name: str) -> str:
        done = docker("logs", name, check=False, timeout=60)
        return done.stdout + done.stderr

    def close(self) -> None:
        for name in self.containers:
            (self.logs / f"{name}.container.log").write_text(self.container_log(name))
            docker("rm", "-f", name, check=False)
        for proc in reversed(self.procs):
            stop(proc)
        self.prefect.close()


@dataclass
class Stack(ContainerStack):
    """Everything of one scaled-out setup under ``root``; :meth:`close` stops it all."""

    root: Path
    mlflow_port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shared = self.root / "shared"        # bind-mounted at the same path into every container
        self.store = self.shared / "store"
        self.logs = self.root / "logs"
        for d in (self.store, self.logs, self.root / "home"):
            d.mkdir(parents=True, exist_ok=True)
        # the one Prefect server: started, logged and judged as everywhere else (tests/support/prefect_stack.py)
        self.prefect = PrefectStack(home=self.root / "home", logs=self.logs)
        os.chmod(self.shared, 0o777)  # the image's user (uid 10001) writes the store
        os.chmod(self.store, 0o777)

    # ------------------------------------------------------------------ settings that point the parts at each other
    @property
    def api_url(self) -> str:
        return self.prefect.api

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def production_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def host_env(self) -> dict[str, str]:
        return {**self.prefect.env, "MLFLOW_TRACKING_URI": self.tracking_uri, "SERVEGATE_STORE": str(self.store)}

    def _spawn(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(args, env=self.host_env(), cwd=self.root, stdin=subprocess.DEVNULL,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc, log

    # ------------------------------------------------------------------ servers
    def start_prefect(self) -> None:
        self.prefect.start_server()

    def start_mlflow(self) -> None:
        data = self.root / "mlflow"
        data.mkdir(exist_ok=True)
        proc, log = self._spawn("mlflow-server", [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.mlflow_port),
            "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
            "--artifacts-destination", str(data / "artifacts"), "--serve-artifacts", "--workers", "2"])
        wait_http(f"{self.tracking_uri}/health", proc, log, 240)

    def _run_container(self, name: str, command: list[str], extra: tuple[str, ...] = ()) -> str:
        docker("rm", "-f", name, check=False)
        docker("run", "-d", "--name", name, "--label", LABEL, "--network", "host", "--pid", "host",
               "-v", f"{self.shared}:{self.shared}", *extra,
               "-e", f"PREFECT_API_URL={self.api_url}", "-e", f"MLFLOW_TRACKING_URI={self.tracking_uri}",
               "-e", f"SERVEGATE_STORE={self.store}", "-e", "PREFECT_LOGGING_LEVEL=INFO",
               IMAGE, *command)
        self.containers.append(name)
        return name

    def start_worker(self, name: str, limit: int = 2) -> str:
        """``prefect worker start --pool POOL --type process`` in a container from the image."""
        return self._run_container(name, ["prefect", "worker", "start", "--pool", POOL, "--type", "process",
                                          "--name", name, "--limit", str(limit)])

    def start_production(self, models: list[str]) -> str:
        """The bundled server in a container from the image, watching ``production/<model>`` of the store."""
        entries = "".join(f'  config {{ name: "{m}" base_path: "{self.store / "production" / m}" '
                          'model_platform: "tensorflow" }\n' for m in models)
        config = self.shared / "models.config"
        config.write_text(f"model_config_list {{\n{entries}}}\n")
        name = self._run_container("scale-production", [
            "python", "-m", "servegate.serving", "--port=0", f"--rest_api_port={self.rest_port}",
            f"--model_config_file={config}", "--file_system_poll_wait_seconds=0.2"])
        import httpx

        started = time.monotonic()
        while True:
            try:
                if all(httpx.get(f"{self.production_url}/v1/models/{m}", timeout=2).status_code == 200 for m in models):
                    return name
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < 180, f"production server not up:\n{self.container_log(name)[-3000:]}"
            time.sleep(0.5)

