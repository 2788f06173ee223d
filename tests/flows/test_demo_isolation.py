"""The demo never deploys outside itself, even in a shell whose PREFECT_API_URL names the user's Prefect.

The user's Prefect is set up the way docs/deploying-with-prefect.md says:
``prefect server start``, ``prefect deploy`` of this prefect.yaml (its
``deploy-model`` deployment answers ``servegate.model.exported`` events by
deploying into the default store: the user's production) and ``prefect
worker start``. Then ``servegate demo`` runs in that shell, as the README says.
Not one flow run of ``deploy-model`` may appear, no servegate event may reach
that server, and the default store stays absent.
"""

from __future__ import annotations

import time

import pytest

from tests.support.cli import REPO, run_servegate
from tests.support.logs import problems
from tests.support import prefect_stack
from tests.support.prefect_stack import PrefectStack

# A Prefect server's first start, `prefect deploy`, a worker and the whole demo: minutes on 2 cores.
pytestmark = [pytest.mark.reliability, pytest.mark.slow]

# How long a trigger may take to answer an event once the demo is done (Prefect's triggers act within seconds).
TRIGGER_GRACE_S = 20


@pytest.fixture
def users_prefect(tmp_path):
    with prefect_stack.users_prefect(tmp_path / "home", "deploy-model") as stack:
        yield stack


def _deploy_model_runs(stack: PrefectStack) -> list[dict]:
    deployment = stack.deployment_id("deploy-model", "deploy-model")
    return stack.post("/flow_runs/filter", {"deployments": {"id": {"any_": [deployment]}}})


def _servegate_events(stack: PrefectStack) -> list[dict]:
    page = stack.post("/events/filter", {"filter": {"event": {"prefix": ["servegate."]}}, "limit": 50})
    return page.get("events", [])


def test_the_demo_never_triggers_the_users_deployments(users_prefect, tmp_path):
    stack = users_prefect
    demo = run_servegate("demo", "--work-dir", str(tmp_path / "demo"), home=stack.home, env=stack.env, cwd=REPO,
                         timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]

    deadline = time.monotonic() + TRIGGER_GRACE_S
    while time.monotonic() < deadline:
        runs = _deploy_model_runs(stack)
        assert runs == [], [(r["name"], r["parameters"]) for r in runs]
        time.sleep(2)
    assert [e["event"] for e in _servegate_events(stack)] == []
    assert not (stack.home / ".servegate" / "store").exists()  # the user's production store

    assert f"not on PREFECT_API_URL={stack.api}" in demo.stdout, demo.stdout
    assert "summary" in demo.stdout and "as expected" in demo.stdout
    assert f"PREFECT_HOME={tmp_path / 'demo' / 'prefect'}" in demo.stdout  # how to see the demo's runs
    assert (tmp_path / "demo" / "prefect" / "prefect.db").is_file()
    assert problems(stack.server_log.read_text()) == []
