"""The local Prefect API server that ``servegate deploy`` starts early when no PREFECT_API_URL is set."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing

import pytest

from servegate.flows import prefect_warmup
from servegate.flows.local_api import LocalPrefectServer, startup_timeout_s
from servegate.ports import free_port


@pytest.mark.slow
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


def _read(server: LocalPrefectServer, what: str) -> list:
    request = urllib.request.Request(f"{server.api_url}/{what}/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@pytest.mark.slow
@pytest.mark.reliability  # a Prefect database created from nothing (its migrations: ~10 s)
def test_the_warm_up_reads_once_the_server_answers_and_creates_nothing(tmp_path):
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    prefect_home = tmp_path / "prefect-home"
    database = prefect_home / "prefect.db"  # a database of its own: the session's may hold other tests' runs
    with temporary_settings(updates={PREFECT_HOME: str(prefect_home),
                                     PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}"}):
        server = LocalPrefectServer.launch()
    try:
        server.wait_until_healthy(max(startup_timeout_s(), 60))
        out, _ = server.warm_up.communicate(timeout=60)  # one "METHOD PATH STATUS" line per request
        assert out.splitlines() == [f"{method} {path} 200" for method, path, _ in prefect_warmup.WARM_UP_REQUESTS]
        assert server.warm_up.returncode == 0
        # Nothing a user would see in the Prefect UI: no flow, flow run, task run, log or artifact.
        for what in ("flows", "flow_runs", "task_runs", "logs", "artifacts"):
            assert _read(server, what) == [], what
    finally:
        server.stop()
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("select count(*) from flow").fetchone() == (0,)
        assert db.execute("select count(*) from flow_run").fetchone() == (0,)


def test_a_warm_up_with_no_server_answering_warms_nothing_and_fails():
    api_url = f"http://127.0.0.1:{free_port()}/api"
    assert prefect_warmup.main([api_url, "0.3"]) == 1
    warm_up = prefect_warmup.launch(api_url, 0.3, None)
    out, _ = warm_up.communicate(timeout=30)
    assert (warm_up.returncode, out) == (1, "")


def test_stop_ends_a_warm_up_still_waiting(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    server = LocalPrefectServer.launch()
    warm_up = server.warm_up
    assert warm_up is not None and warm_up.poll() is None  # the server cannot have answered yet
    server.stop()
    assert warm_up.poll() is not None and server.warm_up is None


OWNER = """
import sys, time
from servegate.flows.local_api import LocalPrefectServer, startup_timeout_s
server = LocalPrefectServer.launch()
server.wait_until_healthy(max(startup_timeout_s(), 60))
print(server.process.pid, server.api_url, flush=True)
time.sleep(600)
"""


# A kill proof (~12 s): CI's second step runs it with the other kill proofs.
@pytest.mark.slow
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
