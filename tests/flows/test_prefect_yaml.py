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


@pytest.fixture(scope="module")
def deployment_runs(prefect_server, demo_files):
    """A good model, then a broken one, through `prefect deployment run --watch` (each run once)."""
    env, logs = prefect_server
    good = _run_deployment(env, demo_files["baseline"], "yaml-demo")
    bad = _run_deployment(env, demo_files["broken"], "yaml-demo")
    return env, logs, good, bad


@pytest.mark.slow
def test_deployment_run_watch_exit_codes(deployment_runs):
    env, logs, good, bad = deployment_runs
    assert good.returncode == 0, good.stdout[-2000:] + (logs / "worker.log").read_text()[-3000:]
    assert "Completed" in good.stdout
    assert bad.returncode != 0, bad.stdout[-2000:]
    assert "Failed" in bad.stdout
    store = Path(env["SERVEGATE_HOME"]) / "store"
    assert sorted(p.name for p in (store / "production" / "yaml-demo").iterdir() if p.name.isdigit()) == ["1"]
    assert (store / "rejected" / "yaml-demo" / "2").is_dir()
    # the run failed with the rejection itself, not with Prefect failing to read the state's data
    worker_log = (logs / "worker.log").read_text()
    assert "ModelRejected: model 'yaml-demo' version 2 rejected" in worker_log
    assert "Unexpected result for failed state" not in worker_log


def _chromium() -> str:
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("SERVEGATE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("SERVEGATE_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return found


def _browse(chromium: str, url: str, screenshot: Path) -> str:
    """Render ``url`` headless; keep a screenshot; return the page's text."""
    import re

    common = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
              "--virtual-time-budget=20000"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


@pytest.mark.slow
def test_prefect_ui_shows_the_deploy_run_and_its_artifacts(deployment_runs):
    """Headless Chromium on the real Prefect UI; screenshots kept in test-artifacts/."""
    import httpx

    chromium = _chromium()
    env, logs, good, bad = deployment_runs
    api = env["PREFECT_API_URL"]
    ui = api[: -len("/api")]
    runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"name": {"any_": ["deploy-yaml-demo"]},
                                                                      "state": {"type": {"any_": ["COMPLETED"]}}}}).json()
    assert len(runs) == 1
    run_id = runs[0]["id"]
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)

    page = _browse(chromium, f"{ui}/runs/flow-run/{run_id}", out / "prefect-ui-deploy-run.png")
    assert "deploy-yaml-demo" in page and "Completed" in page and "Artifacts" in page
    assert (out / "prefect-ui-deploy-run.png").stat().st_size > 10_000

    artifacts = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}).json()
    by_key = {a["key"]: a["id"] for a in artifacts}
    assert {"yaml-demo-validation-report", "yaml-demo-versions", "yaml-demo-plots"} <= set(by_key)
    report = _browse(chromium, f"{ui}/artifacts/artifact/{by_key['yaml-demo-validation-report']}",
                     out / "prefect-ui-validation-report.png")
    assert "Deploy of yaml-demo : PROMOTED" in report and "deploy-yaml-demo" in report
