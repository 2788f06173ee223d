"""``servegate sync`` beside a real model server (the bundled one, reading the sync's local directory as
TF Serving would): promote, it serves the new version; roll back, it serves the old one again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from servegate.object_store.sync import read_heartbeats

REPO_ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _available(url: str) -> list[int]:
    try:
        states = requests.get(f"{url}/v1/models/hp2", timeout=2).json().get("model_version_status", [])
    except (requests.RequestException, ValueError):
        return []
    return sorted(int(s["version"]) for s in states if s["state"] == "AVAILABLE")


def _wait_serving(url: str, version: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the model server exited"
        if _available(url) == [version]:
            answer = requests.post(f"{url}/v1/models/hp2/versions/{version}:predict",
                                   json={"instances": [1.0]}, timeout=5).json()
            assert answer["predictions"] == [2.5], answer
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} never served only version {version}; AVAILABLE: {_available(url)}")


@pytest.mark.reliability  # a model server's start (TensorFlow's import) and three convergences
def test_promote_and_rollback_reach_the_model_server(seaweed, s3_store, half_plus_two, tmp_path):
    env = {**os.environ, **seaweed.env(), "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    base, port = tmp_path / "base", _port()
    url = f"http://127.0.0.1:{port}"
    one, two = (s3_store.stage("hp2", half_plus_two).version for _ in range(2))
    s3_store.promote("hp2", one)
    sync = [sys.executable, "-m", "servegate", "sync", "--store", s3_store.location.uri, "--name", "hp2",
            "--base-path", str(base), "--node-id", "node-a", "--interval", "0.3", "--serving-url", url]
    assert subprocess.run(sync + ["--once"], env=env, capture_output=True, timeout=120).returncode == 1  # no server yet
    server_log, sync_log = (tmp_path / "server.log").open("wb"), (tmp_path / "sync.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "servegate.serving", "--model_name=hp2",
                               f"--model_base_path={base}", f"--rest_api_port={port}", f"--port={_port()}",
                               "--file_system_poll_wait_seconds=0.3"], env=env, stdout=server_log,
                              stderr=subprocess.STDOUT)
    syncing = subprocess.Popen(sync, env=env, stdout=sync_log, stderr=subprocess.STDOUT)
    try:
        _wait_serving(url, one, server)
        s3_store.promote("hp2", two)
        _wait_serving(url, two, server)
        s3_store.rollback("hp2", reason="test")
        _wait_serving(url, one, server)
        time.sleep(1.0)  # a pass after AVAILABLE: the heartbeat says so
        beat = next(b for b in read_heartbeats(s3_store.client, s3_store.location) if b["node"] == "node-a")
        assert beat["models"]["hp2"]["available"] == [one] and beat["models"]["hp2"]["lag_s"] == 0.0
    finally:
        for process in (syncing, server):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    for log in (tmp_path / "server.log", tmp_path / "sync.log"):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
