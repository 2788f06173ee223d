"""``servegate rollback`` from the command line emits ``servegate.model.rolled_back`` (the event the
documented Automation hangs on), read back from a real Prefect server (the session's test server). The
CLI runs as a subprocess with a brand-new HOME and the user's PREFECT_API_URL; a Prefect API that does not
answer is refused before production changes; with no Prefect API configured the output says no event
was sent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.flows.test_events import read_model_events
from tests.support.cli import REPO, run_servegate


def _two_versions(root: Path, tracking_uri: str, name: str, model: Path) -> None:
    from servegate.release import Release

    release = Release(root, tracking_uri, announce=False)  # the seeding is not what is measured
    for _ in range(2):
        release.promote(name, release.store.stage(name, model))


def _rollback(tmp_path: Path, name: str, tracking_uri: str, prefect_api: str | None, *extra: str):
    return run_servegate("rollback", "--name", name, "--store", str(tmp_path / "store"), "--tracking-uri",
                         tracking_uri, "--reason", "p95 doubled on the dashboard", *extra,
                         home=tmp_path / f"home-{uuid.uuid4().hex[:6]}",
                         env={"PREFECT_API_URL": prefect_api} if prefect_api else None, cwd=REPO, timeout=180)


def test_cli_rollback_emits_rolled_back_to_the_prefect_api(tmp_path, prefect_harness, tiny_savedmodel):
    from prefect.settings import PREFECT_API_URL

    name = f"cli-rb-{uuid.uuid4().hex[:6]}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _two_versions(tmp_path / "store", tracking_uri, name, tiny_savedmodel)
    done = _rollback(tmp_path, name, tracking_uri, PREFECT_API_URL.value(), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["from_version"], result["to_version"]) == (2, 1) and result["event_id"], result

    events = read_model_events(name, 1)
    assert [e.event for e in events] == ["servegate.model.rolled_back"], events
    event = events[0]
    assert str(event.id) == result["event_id"] and event.resource["servegate.version"] == "2"
    payload = event.payload
    assert (payload["version"], payload["production_version"], payload["action"]) == (2, 1, "rollback")
    assert payload["reasons"] == ["p95 doubled on the dashboard"]
    assert payload["mlflow_run_id"] == result["mlflow_run_id"]
    assert "Traceback" not in done.stderr


def test_cli_rollback_refuses_an_unreachable_prefect_api_before_changing_production(
        tmp_path, tiny_savedmodel, closed_port_url):
    from servegate.model_store import ModelStore

    name = f"cli-rb-{uuid.uuid4().hex[:6]}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _two_versions(tmp_path / "store", tracking_uri, name, tiny_savedmodel)
    done = _rollback(tmp_path, name, tracking_uri, f"{closed_port_url}/api")
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    assert "PREFECT_API_URL" in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
    assert ModelStore(tmp_path / "store").serving_version(name) == 2


@pytest.mark.reliability  # a deploy's worth of set-up (~8 s): CI's second step
def test_cli_rollback_without_a_prefect_api_says_no_event_was_sent(tmp_path, tiny_savedmodel):
    name = f"cli-rb-{uuid.uuid4().hex[:6]}"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _two_versions(tmp_path / "store", tracking_uri, name, tiny_savedmodel)
    done = _rollback(tmp_path, name, tracking_uri, None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "production now serves version 1" in done.stdout
    assert "Prefect: no event (no PREFECT_API_URL set" in done.stdout, done.stdout
