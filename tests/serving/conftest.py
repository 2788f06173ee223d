"""The bundled server as a real subprocess, for the server's tests (and any other that wants one).

``start_bundled_server(args, log_path)`` launches ``python -m servegate.serving``
on two free loopback ports and waits until the REST port answers a status
request for ``wait_for`` with an AVAILABLE version (the ports stay closed
until the first load finished, so refused connections mean "not yet"). The
fixtures ``bundled_server`` (per test) and ``module_bundled_server`` (per
module) hand out a starter and stop every server they started at teardown,
also when the test failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.support.ports import free_port

START_TIMEOUT_S = 90.0  # TensorFlow's import alone takes ~5 s, more on a busy machine


@dataclass
class BundledServer:
    """A running ``python -m servegate.serving``; :meth:`stop` is idempotent."""

    proc: subprocess.Popen
    rest_port: int
    grpc_port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def launch(args: list[str], log_path: Path, rest: bool = True, grpc: bool = True) -> BundledServer:
    """Start the server with ``args`` (model flags etc.) on fresh ports; does not wait."""
    rest_port = free_port() if rest else 0
    grpc_port = free_port() if grpc else 0
    while grpc and grpc_port == rest_port:
        grpc_port = free_port()
    command = [sys.executable, "-m", "servegate.serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO_ROOT, env=env)
    return BundledServer(proc, rest_port, grpc_port, log_path, command)


def wait_available(server: BundledServer, model: str, timeout: float = START_TIMEOUT_S) -> None:
    """Until ``model`` has an AVAILABLE version; fails with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"bundled server exited with {server.proc.returncode}:\n{server.logs()[-4000:]}")
        try:
            response = requests.get(f"{server.rest_url}/v1/models/{model}", timeout=2)
            states = [s["state"] for s in response.json().get("model_version_status", [])]
            if "AVAILABLE" in states:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"bundled server did not serve {model!r} within {timeout} s:\n{server.logs()[-4000:]}")


class _Starter:
    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.servers: list[BundledServer] = []

    def __call__(self, args: list[str], wait_for: str | None = "default", **launch_kw) -> BundledServer:
        server = launch(args, self._log_dir / f"server-{len(self.servers)}.log", **launch_kw)
        self.servers.append(server)
        if wait_for is not None:
            wait_available(server, wait_for)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def bundled_server(tmp_path):
    """``start(args, wait_for="default") -> BundledServer``; every server is stopped at teardown."""
    starter = _Starter(tmp_path / "logs")
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def module_bundled_server(tmp_path_factory):
    """Like ``bundled_server``, with servers living for the whole test module."""
    starter = _Starter(tmp_path_factory.mktemp("server-logs"))
    yield starter
    starter.stop_all()


KERAS_ONLY = ("/pandas/", "/sklearn/", "/keras/")  # shared objects and files that only Keras's import loads


def keras_files_mapped(pid: int) -> list[str]:
    """The files of Keras's import (and pandas', scikit-learn's) that process ``pid`` has mapped."""
    mapped = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return sorted(p for p in mapped if any(k in p for k in KERAS_ONLY))
