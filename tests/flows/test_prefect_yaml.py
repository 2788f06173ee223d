"""prefect.yaml: its deployments load, and on a real ``prefect server`` with a
process worker, ``prefect deployment run --watch`` exits 0 for a good model and
non-zero for a rejected one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def _spec() -> dict:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def test_deployments_point_at_real_flows_with_trigger_and_schedule():
    import importlib

    spec = _spec()
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert {"deploy-model", "deploy-newest-export", "rollback-model", "train-demo-model"} <= set(by_name)
    for d in spec["deployments"]:
        assert d["work_pool"]["name"] == "servegate-process"
        path, func = d["entrypoint"].split(":")
        module = importlib.import_module(path[:-3].replace("/", "."))
        flow = getattr(module, func)
        assert flow.name == func.replace("_", "-")
    trigger = by_name["deploy-model"]["triggers"][0]
    assert trigger["expect"] == ["servegate.model.exported"]
    from servegate.flows.train_demo import EXPORTED_EVENT

    assert EXPORTED_EVENT in trigger["expect"]
    assert set(trigger["parameters"]) == {"model_path", "reference", "name"}
    assert by_name["deploy-newest-export"]["schedules"][0]["interval"] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real `prefect server` and a process worker, in their own PREFECT_HOME; stopped at the end."""
    import httpx

    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", SERVEGATE_HOME=str(home / "servegate"),
               TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("MLFLOW_TRACKING_URI", None)
    logs = home / "logs"
    logs.mkdir()
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=(logs / "server.log").open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    worker = None
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (logs / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not answer within 90 s"
            time.sleep(0.5)
        for cmd in ([PREFECT, "work-pool", "create", "servegate-process", "--type", "process"],
                    [PREFECT, "--no-prompt", "deploy", "--name", "deploy-model"]):
            done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "servegate-process"], env=env, cwd=REPO,
                                  stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        yield env, logs
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)


def _run_deployment(env: dict, files, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PREFECT, "deployment", "run", "deploy-model/deploy-model", "-p", f"model_path={files.model_path}",
         "-p", f"name={name}", "-p", f"reference={files.reference_path}", "--watch", "--watch-timeout", "300"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=360,
    )


@pytest.mark.slow
def test_deployment_run_watch_exit_codes(prefect_server, demo_files):
    env, logs = prefect_server
    good = _run_deployment(env, demo_files["baseline"], "yaml-demo")
    assert good.returncode == 0, good.stdout[-2000:] + (logs / "worker.log").read_text()[-3000:]
    assert "Completed" in good.stdout
    bad = _run_deployment(env, demo_files["broken"], "yaml-demo")
    assert bad.returncode != 0, bad.stdout[-2000:]
    assert "Failed" in bad.stdout
    store = Path(env["SERVEGATE_HOME"]) / "store"
    assert sorted(p.name for p in (store / "production" / "yaml-demo").iterdir() if p.name.isdigit()) == ["1"]
    assert (store / "rejected" / "yaml-demo" / "2").is_dir()
    # the run failed with the rejection itself, not with Prefect failing to read the state's data
    worker_log = (logs / "worker.log").read_text()
    assert "ModelRejected: model 'yaml-demo' version 2 rejected" in worker_log
    assert "Unexpected result for failed state" not in worker_log
