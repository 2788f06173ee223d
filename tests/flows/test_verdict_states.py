"""How a verdict looks in Prefect: the flow run's state, its message and its log, read back through the
Prefect API of a real (test) server.

- The run ends in a state the Prefect UI's default filters select. A deployment's Runs tab (and the runs
  page's "Hide scheduled runs" view) filters by state *name* from the UI's fixed list; the names are read
  here from the UI bundle that ``prefect server start`` serves, so a Prefect upgrade that changes the list
  is noticed. The verdict and its reasons are the state's message, which the runs lists show.
- A clean rejection's log holds the judging task's end ("Task run failed with state") and no empty
  traceback (``NoneType: None``).

The deploy flow runs with its steps replaced at the one seam (as tests/flows/test_events.py does); the
real steps judge through the same task wrapper (tests/flows/test_prefect_worker.py runs them on a worker).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from servegate.deploy import steps as declared
from tests.flows.test_events import _fake_steps


def ui_default_state_names() -> set[str]:
    """The state names that the "all except Scheduled" filters select (the deployment Runs tab's default
    in the UI, "Hide scheduled runs"), in every UI bundle installed with Prefect (``ui``; ``ui-v2``,
    Prefect's default UI from 3.8 on): the names every one of their lists holds."""
    import prefect

    lists = []
    for assets in sorted((Path(prefect.__file__).parent / "server").glob("ui*/assets")):
        for bundle in sorted(assets.glob("*.js")):
            for found in re.finditer(r'\[["`]Scheduled["`],["`]Late["`],[^\]]*\]', bundle.read_text(errors="replace")):
                lists.append(set(re.findall(r'["`]([A-Za-z]+)["`]', found.group(0))) - {"Scheduled"})
    if not lists:
        pytest.fail("no list of state names in the Prefect UI bundles")
    return set.intersection(*lists)


def _logs(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # this process's log records reach the server
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


@pytest.mark.parametrize(("verdict", "label"), [("rejected", "Rejected"), ("rolled_back", "Rolled back")])
def test_a_verdict_ends_in_a_state_the_ui_lists_with_the_reasons_and_no_empty_traceback(
        verdict, label, tmp_path, monkeypatch, prefect_harness):
    from prefect.client.orchestration import get_client

    from servegate.flows.deploy import deploy_model
    from servegate.flows.engine import exit_code

    monkeypatch.setattr(declared, "STEPS", _fake_steps(verdict))
    name = f"vs-{verdict.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    (tmp_path / "store").mkdir()
    (tmp_path / "work").mkdir()
    state = deploy_model(model_path="m.keras", name=name, reference="r.csv", store=str(tmp_path / "store"),
                         tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", work_dir=str(tmp_path / "work"),
                         return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(flow_run_id).state
    assert stored.type.value == "FAILED" and stored.name in ui_default_state_names(), stored
    assert stored.message.startswith(f"{label}: "), stored.message
    if verdict == "rejected":
        assert "quality: mae 3.1 > max_mae 0.5" in stored.message
    else:
        assert "bake alarm error_rate" in stored.message
    assert exit_code(stored) == 0  # the worker's entrypoint: a verdict, not a crash

    deadline = time.monotonic() + 20
    while "Finished in state" not in (logs := _logs(flow_run_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "Task run failed with state" in logs, logs[-3000:]
    assert "NoneType: None" not in logs and "Traceback" not in logs, logs[-3000:]


def test_a_crash_is_not_a_verdict():
    from prefect.states import Failed

    from servegate.flows.engine import exit_code

    assert exit_code(Failed(message="Flow run encountered an exception: ValueError: x")) == 1
    assert exit_code(Failed(name="Rejected", message="quality: mae 3.1 > max_mae 0.5")) == 1
