"""prefect.yaml: its deployments load and point at real flows, the process pool starts flow runs with
servegate's entrypoint, and nothing defaults to a folder inside the checkout. The real server and worker
are in test_prefect_server.py (scheduler) and test_prefect_worker.py (deploy runs, UI)."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _spec() -> dict:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def _by_name() -> dict:
    return {d["name"]: d for d in _spec()["deployments"]}


def test_deployments_point_at_real_flows_with_trigger_and_schedule():
    by_name = _by_name()
    assert {"deploy-model", "deploy-newest-export", "rollback-model", "train-demo-model"} <= set(by_name)
    for d in by_name.values():
        assert d["work_pool"]["name"] == "servegate-process"
        path, func = d["entrypoint"].split(":")
        module = importlib.import_module(path[:-3].replace("/", "."))
        flow = getattr(module, func)
        assert flow.name == func.replace("_", "-")
    trigger = by_name["deploy-model"]["triggers"][0]
    assert trigger["expect"] == ["servegate.model.exported"]
    from servegate.demo.train_demo import EXPORTED_EVENT

    assert EXPORTED_EVENT in trigger["expect"]
    assert set(trigger["parameters"]) == {"model_path", "reference", "name"}
    assert by_name["deploy-newest-export"]["schedules"][0]["interval"] > 0


def test_process_pool_runs_flows_with_servegates_entrypoint():
    """prefect.engine would log a rejection as a crash and exit 1 (see servegate.flows.engine)."""
    for d in _by_name().values():
        command = d["work_pool"]["job_variables"]["command"]
        assert command == "{{ $PWD }}/.venv/bin/python -m servegate.flows.engine", command
    assert importlib.util.find_spec("servegate.flows.engine") is not None


def test_no_default_folder_inside_the_checkout():
    """The scheduled deployment once watched {{ $PWD }}/.servegate/demo-exports, which does not exist."""
    for d in _by_name().values():
        for value in (d.get("parameters") or {}).values():
            assert "$PWD" not in str(value) and ".servegate/demo-exports" not in str(value), d["name"]
    assert "watch_dir" not in _by_name()["deploy-newest-export"]["parameters"]


def test_watched_folder_defaults_under_servegate_home(tmp_path, monkeypatch):
    import pytest

    from servegate.errors import ConfigError
    from servegate.flows.watch import watched_folder

    monkeypatch.delenv("SERVEGATE_EXPORTS", raising=False)
    monkeypatch.setenv("SERVEGATE_HOME", str(tmp_path / "home"))
    assert watched_folder(None) == tmp_path / "home" / "exports"
    assert (tmp_path / "home" / "exports").is_dir()  # created: a scheduled run on a fresh machine has nothing to do
    monkeypatch.setenv("SERVEGATE_EXPORTS", str(tmp_path / "mine"))
    assert watched_folder(None) == tmp_path / "mine"
    assert watched_folder(str(tmp_path / "given")) == tmp_path / "given"
    from servegate.flows.watch import newest_export

    with pytest.raises(ConfigError, match=r"watch_dir .*given: no such directory"):
        newest_export(watched_folder(str(tmp_path / "given")))
