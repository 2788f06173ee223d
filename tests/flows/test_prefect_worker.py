"""prefect.yaml's deploy-model deployment on a real Prefect server and a real process worker, with a
brand-new HOME, as docs/deploying-with-prefect.md tells users to run it.

A good model, then a model validation rejects, through ``prefect deployment run --watch``. A rejection is
an expected outcome, not a crash: the flow run ends Failed with the reasons as its message, the judging
step ("validate on canary") is the task run shown Failed and no other, the flow run's logs hold no
"Engine execution exited with unexpected exception" (nor any traceback), the worker does not report
"Process exited with a general error", and the server's log holds no traceback (nor `database is locked`).
The flow run's message starts with the verdict, and its log holds no empty traceback (``NoneType: None``).
The Prefect UI shows the promoted run and its artifacts, and both runs in its default views: the
deployment's Runs tab, the flow's page, the runs page (headless Chromium; screenshots in test-artifacts/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import REPO
from tests.support.logs import problems
from tests.support.prefect_stack import PREFECT, PrefectStack, users_prefect

# Several minutes on a 2-core machine (a server's first start, `prefect deploy`, two real deploys through
# the worker, the UI): the reliability sweep, CI's second step, not the default suite.
pytestmark = [pytest.mark.reliability, pytest.mark.slow]

MODEL = "worker-demo"
JUDGE = "validate on canary"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """``prefect server start`` + ``prefect deploy --name deploy-model`` + ``prefect worker start``."""
    with users_prefect(tmp_path_factory.mktemp("fresh-home"), "deploy-model") as stack:
        yield stack


def _run_deployment(stack: PrefectStack, files) -> tuple[subprocess.CompletedProcess, str]:
    """``prefect deployment run ... --watch``; returns the command and the flow run's id."""
    done = subprocess.run(
        [PREFECT, "deployment", "run", "deploy-model/deploy-model", "-p", f"model_path={files.model_path}",
         "-p", f"name={MODEL}", "-p", f"reference={files.reference_path}", "--watch", "--watch-timeout", "300"],
        env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=360,
    )
    found = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    return done, found.group(1)


@pytest.fixture(scope="module")
def runs(stack, demo_files):
    """The baseline (promoted), then the broken variant (rejected), each run once."""
    good = _run_deployment(stack, demo_files["baseline"])
    bad = _run_deployment(stack, demo_files["broken"])
    return good, bad


def _flow_run(stack: PrefectStack, run_id: str) -> dict:
    import httpx

    reply = httpx.get(f"{stack.api}/flow_runs/{run_id}", timeout=30)
    reply.raise_for_status()
    return reply.json()


def _flow_run_logs(stack: PrefectStack, run_id: str) -> str:
    logs = stack.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"})
    return "\n".join(entry["message"] for entry in logs)


def _task_runs(stack: PrefectStack, run_id: str) -> dict[str, str]:
    """{task run name without its suffix: state type}."""
    tasks = stack.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    return {t["name"].rsplit("-", 1)[0]: t["state"]["type"] for t in tasks}


def _store_root(stack: PrefectStack) -> Path:
    return stack.home / ".servegate" / "store"  # the default under the fresh HOME


def test_promoted_deploy_completes(stack, runs):
    (good, good_id), _ = runs
    assert good.returncode == 0, good.stdout[-2000:] + stack.worker_log.read_text()[-3000:]
    assert _flow_run(stack, good_id)["state"]["type"] == "COMPLETED"
    assert set(_task_runs(stack, good_id).values()) == {"COMPLETED"}
    production = _store_root(stack) / "production" / MODEL
    assert sorted(p.name for p in production.iterdir() if p.name.isdigit()) == ["1"]


def test_rejection_ends_failed_with_reasons_and_no_crash(stack, runs):
    from servegate.model_store import ModelStore

    _, (bad, bad_id) = runs
    assert bad.returncode != 0, bad.stdout[-2000:]  # --watch: a Failed run is a non-zero exit for CI
    flow_run = _flow_run(stack, bad_id)
    state = flow_run["state"]
    reason = ModelStore(_store_root(stack)).status(MODEL).rejected_reasons[2]
    assert state["type"] == "FAILED" and state["message"].startswith("Rejected: "), state
    reasons = state["message"].removeprefix("Rejected: ")
    assert reason and (reason in reasons or reasons in reason), (reason, state["message"])

    tasks = _task_runs(stack, bad_id)
    assert tasks.get(JUDGE) == "FAILED", tasks
    falsely_failed = {name: kind for name, kind in tasks.items() if name != JUDGE and kind != "COMPLETED"}
    assert not falsely_failed, tasks

    logs = _flow_run_logs(stack, bad_id)
    assert "Engine execution exited with unexpected exception" not in logs, logs[-3000:]
    assert "Traceback (most recent call last)" not in logs, logs[-3000:]
    assert "Task run failed with state" in logs and "NoneType: None" not in logs, logs[-3000:]

    worker_log = _worker_log_after_both_processes_ended(stack)
    # Prefect 3.9 logs a flow-run process's exit only when its status is not 0 (and then proposes Crashed)
    assert "Process exited with a general error" not in worker_log, worker_log[-3000:]
    assert "exited with status code" not in worker_log, worker_log[-3000:]
    assert "Traceback (most recent call last)" not in worker_log, worker_log[-3000:]  # it streams the flow's output
    assert _flow_run(stack, bad_id)["state"]["type"] == "FAILED"  # not Crashed by the worker after the exit
    found = problems(stack.server_log.read_text())
    assert not found, "prefect server logged:\n" + "\n---\n".join(found[:3])


def _worker_log_after_both_processes_ended(stack: PrefectStack, grace_s: float = 15) -> str:
    """The worker's log once it had time to see both flow-run processes end (it logs an exit only when
    the status is not 0, after the run's final state, which ends --watch)."""
    time.sleep(grace_s)
    return stack.worker_log.read_text()


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("SERVEGATE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("SERVEGATE_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return found


def _browse(chromium: str, url: str, screenshot: Path) -> str:
    """Render ``url`` headless; keep a screenshot; return the page's text."""
    # The lists fade in (CSS transitions run on the compositor, not on virtual time): reduced motion and
    # every compositor stage before the capture, or the screenshot shows a list still empty.
    common = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--window-size=1400,1000", "--virtual-time-budget=30000", "--run-all-compositor-stages-before-draw",
              "--force-prefers-reduced-motion"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_prefect_ui_shows_the_runs_and_the_artifacts(stack, runs):
    """Headless Chromium on the real Prefect UI; screenshots kept in test-artifacts/."""
    chromium = _chromium()
    (_, good_id), (_, bad_id) = runs
    ui = stack.api[: -len("/api")]
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)

    good_name = _flow_run(stack, good_id)["name"]
    page = _browse(chromium, f"{ui}/runs/flow-run/{good_id}", out / "prefect-ui-deploy-run.png")
    assert good_name in page and "Completed" in page and "Artifacts" in page
    assert (out / "prefect-ui-deploy-run.png").stat().st_size > 10_000

    bad_run = _flow_run(stack, bad_id)
    page = _browse(chromium, f"{ui}/runs/flow-run/{bad_id}", out / "prefect-ui-rejected-run.png")
    assert bad_run["name"] in page and bad_run["state"]["name"] in page

    artifacts = stack.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [good_id]}}})
    by_key = {a["key"]: a["id"] for a in artifacts}
    assert f"{MODEL}-validation-report" in by_key, sorted(by_key)
    report = _browse(chromium, f"{ui}/artifacts/artifact/{by_key[f'{MODEL}-validation-report']}",
                     out / "prefect-ui-validation-report.png")
    assert MODEL in report and "PROMOTED" in report.upper()


def test_every_outcome_shows_in_the_uis_default_views(stack, runs):
    """The promoted and the rejected run, each in the Prefect UI's default views as a user opens them: the
    deployment's Runs tab (which filters by state name), the flow's page, the runs page. A run in a state
    named outside Prefect's list ("Rejected") was missing from the first. Screenshots in test-artifacts/."""
    chromium = _chromium()
    (_, good_id), (_, bad_id) = runs
    ui = stack.api[: -len("/api")]
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    good, bad = _flow_run(stack, good_id), _flow_run(stack, bad_id)
    assert bad["state"]["message"].startswith("Rejected: "), bad["state"]
    views = {}
    # Both of Prefect's UIs: "/" opens the new one (/v2/...), the links in logs ("View at ...") the previous one.
    for prefix in ("", "/v2"):
        tag = prefix.strip("/") or "v1"
        views.update({f"{tag}-deployment-runs-tab": f"{ui}{prefix}/deployments/deployment/{good['deployment_id']}?tab=Runs",
                      f"{tag}-flow-page": f"{ui}{prefix}/flows/flow/{good['flow_id']}",
                      f"{tag}-runs-page": f"{ui}{prefix}/runs"})
    for view, url in views.items():
        shot = out / f"prefect-ui-{view}.png"
        page = _browse(chromium, url, shot)
        assert good["name"] in page, (view, url, page[:3000])
        assert bad["name"] in page, (view, url, page[:3000])
        assert "Completed" in page and "Failed" in page, (view, page[:3000])
        assert shot.stat().st_size > 10_000
