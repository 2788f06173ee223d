"""The local Prefect API server that ``servegate deploy`` starts early when no PREFECT_API_URL is set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from servegate.flows.local_api import LocalPrefectServer, startup_timeout_s

pytestmark = pytest.mark.slow


def test_starts_answers_and_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    server = LocalPrefectServer.launch()
    try:
        assert startup_timeout_s() > 0
        server.wait_until_healthy(max(startup_timeout_s(), 60))
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=5) as reply:
            assert reply.status == 200
        process = server.process
    finally:
        server.stop()
    assert process.poll() is not None  # reaped
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.api_url}/health", timeout=2)
    server.stop()  # twice is fine


OWNER = """
import sys, time
from servegate.flows.local_api import LocalPrefectServer, startup_timeout_s
server = LocalPrefectServer.launch()
server.wait_until_healthy(max(startup_timeout_s(), 60))
print(server.process.pid, server.api_url, flush=True)
time.sleep(600)
"""


# A kill proof (~12 s): CI's second step runs it with the other kill proofs.
@pytest.mark.reliability
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_sigkilled_owner_leaves_no_server_behind(tmp_path):
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"))
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        server_pid, api_url = owner.stdout.readline().split()
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _alive(int(server_pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(int(server_pid)), "the local Prefect server outlived its SIGKILLed owner"
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{api_url}/health", timeout=2)
    finally:
        if owner.poll() is None:
            owner.kill()


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan is reaped by init, not by us)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
