"""``servegate serve --store s3://...`` as a user runs it (a subprocess, a brand-new HOME) against a real
SeaweedFS: it serves production's version from a synced local directory, follows a promotion and a
rollback, reports itself in the fleet, and takes its heartbeat away when stopped. Nothing promoted, or a
--node-id beside a directory store, is refused up front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servegate.object_store.sync import read_heartbeats
from tests.object_store.test_cli_deploy import run_cli
from tests.object_store.test_sync_serving import _port, _wait_serving

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, seaweed, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SERVEGATE_", "MLFLOW_"))}
    env.update(seaweed.env(), HOME=str(home), PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("by_variable", [False, True])
def test_serve_refuses_a_model_production_never_served(tmp_path, seaweed, s3_store, half_plus_two, by_variable):
    s3_store.stage("hp2", half_plus_two)  # published, never promoted
    uri = s3_store.location.uri
    args = ["serve", "--name", "hp2", "--port", str(_port()), "--grpc-port", "0"]
    env = {**seaweed.env(), **({"SERVEGATE_STORE": uri} if by_variable else {})}
    result = run_cli(tmp_path, *args, *([] if by_variable else ["--store", uri]), env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    source = "SERVEGATE_STORE" if by_variable else "--store"
    assert _last_line(result) == (f"error: {source} {uri}: production of model 'hp2' serves nothing: promote a "
                                  f"version first (servegate deploy --store {uri})")
    assert "Traceback" not in result.stderr
    assert read_heartbeats(s3_store.client, s3_store.location) == []  # it took its heartbeat away


def test_serve_refuses_a_missing_bucket_and_a_node_id_on_a_directory(tmp_path, seaweed):
    missing = run_cli(tmp_path, "serve", "--name", "hp2", "--store", "s3://no-such-bucket/s", env=seaweed.env())
    assert missing.returncode == 2 and "bucket 'no-such-bucket' does not exist" in _last_line(missing)
    local = run_cli(tmp_path, "serve", "--name", "hp2", "--store", str(tmp_path / "store"), "--node-id", "a",
                    env=seaweed.env())
    assert local.returncode == 2, local.stderr
    assert _last_line(local).startswith("error: --node-id 'a': only a server on an s3:// store reports to a fleet")
    assert "Traceback" not in missing.stderr + local.stderr


@pytest.mark.reliability  # a model server's start (TensorFlow's import) and three convergences
def test_serve_from_a_bucket_follows_promotion_and_rollback(tmp_path, seaweed, s3_store, half_plus_two):
    one, two = (s3_store.stage("hp2", half_plus_two).version for _ in range(2))
    s3_store.promote("hp2", one)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "servegate", "serve", "--name", "hp2", "--store",
                               s3_store.location.uri, "--port", str(port), "--grpc-port", "0", "--poll-seconds",
                               "0.3", "--node-id", "serve-a"], env=_env(tmp_path, seaweed), stdout=log,
                              stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_serving(url, one, server)
        s3_store.promote("hp2", two)
        _wait_serving(url, two, server)
        shown = run_cli(tmp_path, "status", "--name", "hp2", "--store", s3_store.location.uri, "--json",
                        env=seaweed.env())
        fleet = {node["node"]: node for node in json.loads(shown.stdout)["fleet"]}
        assert fleet["serve-a"]["serving"] == two and fleet["serve-a"]["live"], fleet
        s3_store.rollback("hp2", reason="test")
        _wait_serving(url, one, server)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    output = (tmp_path / "serve.log").read_text()
    assert code == 0 and "Traceback" not in output, output[-3000:]
    time.sleep(0.1)
    assert read_heartbeats(s3_store.client, s3_store.location) == []  # its directory went with it
    assert s3_store.status("hp2").deleted == [two]  # so nothing protects the rolled-back version any more


_PAUSED = ("import sys, time; from servegate.model_store import fsutil; "
           "fsutil._checkpoint_hook = lambda point: time.sleep(60) if point == 's3-download:verified' else None; "
           "from servegate.cli import main; sys.exit(main(sys.argv[1:]))")


def test_sigterm_during_the_first_download_leaves_nothing(tmp_path, seaweed, s3_store, half_plus_two):
    """Killed politely before the server started: the temporary directory goes, exit 128+15."""
    s3_store.promote("hp2", s3_store.stage("hp2", half_plus_two).version)
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = subprocess.Popen([sys.executable, "-c", _PAUSED, "serve", "--name", "hp2", "--store",
                               s3_store.location.uri, "--port", str(_port()), "--grpc-port", "0"],
                              env=_env(tmp_path, seaweed, TMPDIR=str(temp)), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(temp.glob("servegate-serve-*/models/hp2/.servegate-tmp-*")):
        assert server.poll() is None and time.monotonic() < deadline, server.communicate()[1][-3000:]
        time.sleep(0.1)
    time.sleep(0.3)  # past the last file: paused between the verification and the rename
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=60)
    assert server.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-3000:]
    assert list(temp.iterdir()) == []
