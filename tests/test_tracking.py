"""Tracker against a real MLflow SQLite store in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from servegate.errors import TrackingError
from servegate.tracking import CHALLENGER, CHAMPION, Tracker, metric_key


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Tracker:
    # one database per module: creating MLflow's tables costs ~1.5 s
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return Tracker(f"sqlite:///{db}")


def _savedmodel(tmp_path: Path) -> Path:
    d = tmp_path / "sm"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"pb")
    (d / "variables" / "variables.index").write_bytes(b"ix")
    return d


def test_run_params_metrics_artifacts_and_status(tracker, tmp_path):
    run_id = tracker.start_run("m-run", params={"serving": "process", "rows": 64})
    logged = tracker.log_figures(
        run_id, {"parity.fraction": 1.0, "latency p95 (ms)": 3.5, "nan": float("nan"), "passed": True, "txt": "x"}
    )
    assert logged == {"parity.fraction": 1.0, "latency p95 _ms_": 3.5, "passed": 1.0}
    report = tmp_path / "report.json"
    report.write_text("{}")
    tracker.log_artifact(run_id, report, "report")
    tracker.log_text(run_id, "# report", "report/report.md")
    tracker.end_run(run_id, "FAILED")

    run = tracker.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.params == {"serving": "process", "rows": "64"}
    assert run.data.metrics["latency p95 _ms_"] == 3.5
    exp = tracker.client.get_experiment(run.info.experiment_id)
    assert exp.name == "servegate/m-run"
    names = {a.path for a in tracker.client.list_artifacts(run_id, "report")}
    assert names == {"report/report.json", "report/report.md"}
    # artifacts sit beside the SQLite file, not in the working directory
    assert run.info.artifact_uri.startswith(Path(tracker.tracking_uri[len("sqlite:///"):]).parent.as_uri())


def test_registry_versions_tags_and_aliases(tracker, tmp_path):
    sm = _savedmodel(tmp_path)
    r1 = tracker.start_run("m-reg")
    v1 = tracker.register_version(r1, "m-reg", sm, serving_version=1)
    assert v1.source.endswith("/artifacts/savedmodel")
    assert {a.path for a in tracker.client.list_artifacts(r1, "savedmodel")} == {
        "savedmodel/saved_model.pb",
        "savedmodel/variables",
    }
    tracker.record_verdict("m-reg", v1.registry_version, "passed")
    assert tracker.set_champion("m-reg", 1) == v1.registry_version

    r2 = tracker.start_run("m-reg")
    v2 = tracker.register_version(r2, "m-reg", sm, serving_version=2)
    tracker.record_verdict("m-reg", v2.registry_version, "failed", ["parity: 0.5 < 0.99", "sanity: NaN"])
    assert str(tracker.alias_version("m-reg", CHALLENGER).version) == v2.registry_version
    assert str(tracker.alias_version("m-reg", CHAMPION).version) == v1.registry_version
    mv2 = tracker.client.get_model_version("m-reg", v2.registry_version)
    assert mv2.tags == {"serving_version": "2", "verdict": "failed", "reasons": "parity: 0.5 < 0.99\nsanity: NaN"}
    assert mv2.run_id == r2

    # production serves nothing -> no champion; an unregistered version -> no champion either
    assert tracker.set_champion("m-reg", None) is None
    assert tracker.alias_version("m-reg", CHAMPION) is None
    tracker.set_champion("m-reg", 1)
    assert tracker.set_champion("m-reg", 99) is None
    assert tracker.alias_version("m-reg", CHAMPION) is None


def test_metric_key_keeps_allowed_characters():
    assert metric_key("quality/mae") == "quality/mae"
    assert metric_key("p99[ms]") == "p99_ms_"


def test_unopenable_sqlite_store_is_a_tracking_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrackingError, match="file"):
        Tracker(f"sqlite:///{blocker}/sub/mlflow.db").start_run("m")


def test_environment_overrides_default_uri(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert Tracker().tracking_uri == uri


def test_runs_of_a_killed_owner_are_ended_killed_by_the_next_run(tracker):
    """A SIGKILLed deploy leaves its run RUNNING; the next start_run in the experiment ends it KILLED."""
    import subprocess
    import sys

    from servegate.tracking.tracker import OWNER_PID_TAG

    child = subprocess.run(
        [sys.executable, "-c",
         "import sys; from servegate.tracking import Tracker; print(Tracker(sys.argv[1]).start_run('m-abandoned'))",
         tracker.tracking_uri], capture_output=True, text=True, timeout=120, check=True)
    abandoned = child.stdout.strip().splitlines()[-1]
    assert tracker.run_status(abandoned) == "RUNNING"  # its owner exited without ending it
    mine = tracker.start_run("m-abandoned")
    assert tracker.run_status(abandoned) == "KILLED"
    assert "was gone" in tracker.client.get_run(abandoned).data.tags["servegate.ended_by"]
    # a live owner's run (this process's) is left alone by the next run
    tracker.start_run("m-abandoned")
    assert tracker.run_status(mine) == "RUNNING"
    assert tracker.client.get_run(mine).data.tags[OWNER_PID_TAG] == str(__import__("os").getpid())


def test_unreachable_tracking_server_is_named_at_once():
    """MLflow's client would retry a dead server for minutes; the up-front check names the URI."""
    import socket

    from servegate.tracking import check_tracking_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingError, match=f"not reachable at MLFLOW_TRACKING_URI=http://127.0.0.1:{port}"):
        check_tracking_server(f"http://127.0.0.1:{port}")
    check_tracking_server("sqlite:///needs-no-server.db")  # nothing to check


def test_processes_opening_a_fresh_sqlite_store_at_once_all_succeed(tmp_path):
    """Concurrent first use of one SQLite file: MLflow's table creation is serialised by servegate."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    code = "import sys; from servegate.tracking import Tracker; print(Tracker(sys.argv[1]).start_run('m-fresh'))"
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-2000:] for _, err in outs]
    tracker = Tracker(uri)
    exp = tracker.client.get_experiment_by_name("servegate/m-fresh")
    assert len(tracker.client.search_runs([exp.experiment_id])) == 4
