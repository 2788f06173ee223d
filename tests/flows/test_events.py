"""The flows emit ``servegate.model.promoted`` / ``.rejected`` / ``.rolled_back``, read back from a
real Prefect server (the session's test server) through the client's events API.

The deploy flow runs with its steps replaced at the one seam
(``servegate.deploy.steps.STEPS``, as test_step_parity does) so that each
verdict takes a second; the real steps emit through the same line of the flow
(tests/reliability/test_bake.py reads the event of a real bake's rollback).
The rollback flow runs for real (store, MLflow, Release).
"""

from __future__ import annotations

import time
import uuid

import pytest

from servegate.deploy import steps as declared
from servegate.deploy.record import AttemptRecord


def read_model_events(name: str, want: int, timeout_s: float = 30.0) -> list:
    """The events about model ``name``, once ``want`` of them arrived (the server persists them
    asynchronously), oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)  # this process's emitter sends what it holds
    flt = EventFilter(resource=EventResourceFilter(id=[f"servegate.model.{name}"]),
                      event=EventNameFilter(prefix=["servegate.model."]))
    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as client:
            events = client.read_events(filter=flt, limit=50).events
        if len(events) >= want or time.monotonic() > deadline:
            return sorted(events, key=lambda e: e.occurred)
        time.sleep(0.5)


def _fake_steps(verdict: str) -> tuple[declared.Step, ...]:
    """The declared steps, each a pass-through except what makes ``verdict`` happen."""
    from servegate.deploy.bake import judge_bake
    from servegate.deploy.verdict import ModelRejected

    def run(step: declared.Step):
        def _run(record: AttemptRecord) -> AttemptRecord:
            if step.name == "stage version":
                return record.but(version=2, previous_production=1, run_id=None)
            if step.name == "validate on canary" and verdict == "rejected":
                raise ModelRejected("model rejected", ["quality: mae 3.1 > max_mae 0.5"])
            if step.name == "validate on canary":
                return record.but(figures={"quality.mae": 0.04})
            if step.name == "promote version":
                return record.but(promoted=True)
            if step.name == "bake production" and verdict == "rolled_back":
                alarm = {"name": "error_rate", "message": "error rate 0.250 > limit 0.05",
                         "figures": {"error_rate": 0.25, "limit": 0.05}}
                return record.but(bake={"verdict": "alarm", "alarm": alarm})
            return record
        return _run

    def undo(step: declared.Step):
        return lambda record, reason: record.but(rolled_back=True) if step.name == "promote version" else record

    return tuple(declared.Step(s.name, run(s), undo(s) if s.undo else None, preflight=s.preflight,
                               judge=judge_bake if s.name == "bake production" else None)
                 for s in declared.STEPS)


@pytest.mark.parametrize("verdict", ["promoted", "rejected", "rolled_back"])
def test_the_deploy_flow_emits_its_verdict_about_the_model(verdict, tmp_path, monkeypatch, prefect_harness):
    from servegate.flows.deploy import deploy_model

    monkeypatch.setattr(declared, "STEPS", _fake_steps(verdict))
    name = f"ev-{verdict.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    (tmp_path / "store").mkdir()
    (tmp_path / "work").mkdir()
    state = deploy_model(model_path="m.keras", name=name, reference="r.csv", store=str(tmp_path / "store"),
                         tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", work_dir=str(tmp_path / "work"),
                         return_state=True)
    assert state.is_completed() == (verdict == "promoted"), state
    events = read_model_events(name, 1)
    assert [e.event for e in events] == [f"servegate.model.{verdict}"]
    event = events[0]
    assert event.resource.id == f"servegate.model.{name}" and event.resource["servegate.version"] == "2"
    payload = event.payload
    assert (payload["version"], payload["verdict"], payload["previous_production_version"]) == (2, verdict, 1)
    assert payload["prefect_flow_run_id"] == str(state.state_details.flow_run_id)
    assert f"prefect.flow-run.{state.state_details.flow_run_id}" in {r.id for r in event.related}
    if verdict == "rejected":
        assert payload["reasons"] == ["quality: mae 3.1 > max_mae 0.5"]
    if verdict == "rolled_back":
        assert payload["alarm"]["name"] == "error_rate" and payload["alarm"]["figures"]["error_rate"] == 0.25
        assert payload["reasons"][0].startswith("bake alarm error_rate")
    if verdict == "promoted":
        assert payload["figures"]["quality.mae"] == 0.04 and payload["reasons"] == []


def test_the_rollback_flow_emits_rolled_back(tmp_path, prefect_harness, tiny_savedmodel):
    from servegate.flows.rollback import rollback_model
    from servegate.release import Release

    name = f"ev-rb-{uuid.uuid4().hex[:6]}"
    release = Release(tmp_path / "store", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for _ in range(2):
        release.promote(name, release.store.stage(name, tiny_savedmodel))
    result = rollback_model(name, store=str(tmp_path / "store"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            reason="p95 doubled on the dashboard")
    assert (result["from_version"], result["to_version"]) == (2, 1)
    events = read_model_events(name, 1)
    assert [e.event for e in events] == ["servegate.model.rolled_back"]
    payload = events[0].payload
    assert (payload["version"], payload["production_version"], payload["action"]) == (2, 1, "rollback")
    assert payload["reasons"] == ["p95 doubled on the dashboard"] and payload["mlflow_run_id"] == result["mlflow_run_id"]
    assert events[0].resource["servegate.version"] == "2"


def test_the_documented_automation_notifies_when_production_was_rolled_back(tmp_path, prefect_harness):
    """docs/deploying-with-prefect.md's Automation, created with ``prefect automation create`` on the
    Prefect server, posts its notification (a webhook block to a local HTTP server) on the event."""
    import os
    import re
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL

    from servegate.flows.events import emit_rollback
    from tests.conftest import REPO_ROOT

    received: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(self.rfile.read(int(self.headers.get("content-length", 0))).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        block_id = CustomWebhookNotificationBlock(
            name="hook", url=f"http://127.0.0.1:{server.server_port}/hook", method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"}).save(f"servegate-test-{uuid.uuid4().hex[:6]}")
        docs = (REPO_ROOT / "docs" / "deploying-with-prefect.md").read_text()
        automation = re.search(r"```yaml\n(automations:.*?)```", docs, re.S).group(1)
        path = tmp_path / "servegate-automations.yaml"
        path.write_text(automation.replace("00000000-0000-0000-0000-000000000000", str(block_id)))
        created = subprocess.run([sys.executable, "-m", "prefect", "automation", "create", "--from-file", str(path)],
                                 env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
                                 capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr[-2000:]
        name = f"ev-auto-{uuid.uuid4().hex[:6]}"
        time.sleep(2)  # the server loads new automations on its next refresh
        emit_rollback({"model_name": name, "from_version": 3, "to_version": 2, "reason": "bake alarm error_rate",
                       "mlflow_run_id": "run-1", "changed": True}, "flow-1")
        deadline = time.monotonic() + 60
        while not any(name in body for body in received) and time.monotonic() < deadline:
            time.sleep(0.5)
        body = next((b for b in received if name in b), None)
        assert body is not None, received
        assert f"servegate: {name} rolled back" in body and "version 3 was rolled back; production serves 2" in body
        assert "bake alarm error_rate" in body and "MLflow run run-1" in body
    finally:
        server.shutdown()
