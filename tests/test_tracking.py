"""Tracker against a real MLflow SQLite store in a temp dir."""

from __future__ import annotations

import json
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
    tracker.record_verdict("m-reg", v1.registry_version, "passed")
    assert tracker.set_champion("m-reg", 1) == v1.registry_version

    r2 = tracker.start_run("m-reg")
    v2 = tracker.register_version(r2, "m-reg", sm, serving_version=2)
    tracker.record_verdict("m-reg", v2.registry_version, "failed", ["parity: 0.5 < 0.99", "sanity: NaN"])
    assert str(tracker.alias_version("m-reg", CHALLENGER).version) == v2.registry_version
    assert str(tracker.alias_version("m-reg", CHAMPION).version) == v1.registry_version
    mv2 = tracker.client.get_model_version("m-reg", v2.registry_version)
    assert mv2.tags == {"serving_version": "2", "verdict": "failed", "reasons": "parity: 0.5 < 0.99\nsanity: NaN",
                        "store_path": str(sm)}
    assert mv2.run_id == r2

    # production serves nothing -> no champion; an unregistered version -> no champion either
    assert tracker.set_champion("m-reg", None) is None
    assert tracker.alias_version("m-reg", CHAMPION) is None
    tracker.set_champion("m-reg", 1)
    assert tracker.set_champion("m-reg", 99) is None
    assert tracker.alias_version("m-reg", CHAMPION) is None


def test_model_bytes_stay_in_the_store(tracker, tmp_path):
    """The registry version's source is the run's savedmodel/ folder, which holds a pointer, not the model."""
    sm = _savedmodel(tmp_path)
    (sm / "variables" / "variables.data-00000-of-00001").write_bytes(b"w" * 200_000)
    run_id = tracker.start_run("m-bytes")
    registered = tracker.register_version(run_id, "m-bytes", sm, serving_version=3)
    assert registered.source == f"{tracker.artifact_uri(run_id)}/savedmodel"
    assert {a.path for a in tracker.client.list_artifacts(run_id, "savedmodel")} == {"savedmodel/location.json"}
    local = Path(registered.source.removeprefix("file://"))
    stored = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
    assert stored < 2_000, f"{stored} bytes of model under MLflow's artifacts"
    location = json.loads((local / "location.json").read_text())
    assert location["serving_version"] == 3 and location["store_path_at_registration"] == str(sm)


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
    import os
    import subprocess
    import sys

    from servegate.tracking.owner import OWNER_TAG

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
    assert tracker.client.get_run(mine).data.tags[OWNER_TAG].startswith(f"{os.getpid()}-")


def test_unreachable_tracking_server_is_named_at_once():
    """MLflow's client would retry a dead server for minutes; the up-front check names the URI."""
    from servegate.tracking import check_tracking_server
    from tests.support.ports import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(TrackingError, match=f"not reachable at MLFLOW_TRACKING_URI=http://127.0.0.1:{port}"):
        check_tracking_server(f"http://127.0.0.1:{port}")
    check_tracking_server("sqlite:///needs-no-server.db")  # nothing to check


@pytest.mark.reliability  # a race proof: several processes opening one new store at once
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


# ---------------------------------------------------------------- MLflow 3 conventions (issue 10 item 8)

def test_experiment_opens_in_the_model_training_view(tracker):
    """MLflow 3's UI opens an experiment tagged mlflow.experimentKind=custom_model_development on its Runs table."""
    run_id = tracker.start_run("m-kind")
    exp = tracker.client.get_experiment(tracker.client.get_run(run_id).info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment created before servegate set the kind gets it when next used
    old = tracker.client.create_experiment("servegate/m-kind-old")
    tracker.start_run("m-kind-old")
    assert tracker.client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_bookkeeping_stays_out_of_the_visible_tags(tracker):
    """The UI lists tags not starting with "mlflow."; the owner (pid, ticks, host) is hidden there."""
    run_id = tracker.start_run("m-visible", tags={"servegate.serving": "process"})
    tags = tracker.client.get_run(run_id).data.tags
    visible = {k for k in tags if not k.startswith("mlflow.")}
    assert visible == {"servegate.model", "servegate.serving"}
    assert tracker.client.get_run(run_id).info.run_name == "m-visible deploy"
    assert tags["mlflow.source.name"] == "servegate" and tags["mlflow.user"]  # "Source", "Created by"


def test_links_open_the_model_training_view(tracker):
    """MLflow 3.17's UI picks GenAI or Model training from the URL (workflowType), else a browser setting."""
    exp_id = tracker.experiment_id("m-link")
    assert tracker.ui_url("m-link", "http://mlflow:5000/") == (
        f"http://mlflow:5000/#/experiments/{exp_id}?workflowType=machine_learning")
    assert tracker.ui_url("m-link", run_id="abc") == (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs/abc?workflowType=machine_learning")


def test_runs_with_the_old_visible_owner_tags_are_still_ended(tracker):
    """Runs written before the owner tag was hidden (servegate.owner_pid/_ticks/_host) are still judged."""
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    exp_id = tracker.experiment_id("m-legacy")
    old = tracker.client.create_run(exp_id, tags={"servegate.owner_pid": gone, "servegate.owner_ticks": "1",
                                                  "servegate.owner_host": socket.gethostname()}).info.run_id
    elsewhere = tracker.client.create_run(exp_id, tags={"servegate.owner_pid": gone,
                                                        "servegate.owner_host": "another-host"}).info.run_id
    tracker.start_run("m-legacy")
    assert tracker.run_status(old) == "KILLED"
    assert tracker.run_status(elsewhere) == "RUNNING"  # another host's pid means nothing here


def _reference(tmp_path: Path) -> Path:
    import pandas as pd

    path = tmp_path / "reference.parquet"
    pd.DataFrame({"x": [[0.5, 1.5]] * 6, "label": [1.0] * 6, "id": list("abcdef")}).to_parquet(path)
    return path


def _report_dir(tmp_path: Path, verdict: str) -> Path:
    report = tmp_path / "report"
    (report / "data_docs").mkdir(parents=True)
    (report / "report.json").write_text(json.dumps({"verdict": verdict, "rows": 6}))
    (report / "report.md").write_text("# report")
    (report / "data_docs" / "index.html").write_text("<html></html>")
    return report


def _outcome(model: str, verdict: str, version: int | None, reasons: list[str]) -> dict:
    return {"model_name": model, "verdict": verdict, "version": version, "reasons": reasons,
            "figures": {"parity.fraction": 0.5, "time.validate_s": 1.25}, "production_version": 1,
            "previous_production_version": 1, "mlflow_run_id": None, "registry_version": None}


def test_record_outcome_of_a_rejected_attempt(tracker, tmp_path):
    run_id = tracker.start_run("m-out")
    registered = tracker.register_version(run_id, "m-out", _savedmodel(tmp_path), serving_version=7)
    reasons = ["parity: 50% of rows within tolerance < 99%", "sanity: 3 NaN predictions"]
    report_uri = tracker.record_outcome(
        run_id, _outcome("m-out", "rejected", 7, reasons), report_dir=_report_dir(tmp_path, "failed"),
        reference=_reference(tmp_path), registry_version=registered.registry_version)

    run = tracker.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.info.run_name == "m-out v7 rejected"
    description = run.data.tags["mlflow.note.content"]
    assert "m-out v7 rejected" in description and all(reason in description for reason in reasons)
    assert run.data.tags["servegate.verdict"] == "rejected" and run.data.tags["servegate.version"] == "7"
    assert run.data.metrics == {"parity.fraction": 0.5, "time.validate_s": 1.25}
    # the reference is the run's evaluation dataset: described (schema, rows, digest), not copied
    (dataset_input,) = run.inputs.dataset_inputs
    assert {(t.key, t.value) for t in dataset_input.tags} == {("mlflow.data.context", "evaluation")}
    dataset = dataset_input.dataset
    assert dataset.name == "reference.parquet" and dataset.source_type == "local"
    assert json.loads(dataset.source)["uri"] == (tmp_path / "reference.parquet").as_uri()
    assert json.loads(dataset.profile)["num_rows"] == 6
    columns = {c["name"]: c["type"] for c in json.loads(dataset.schema)["mlflow_colspec"]}
    assert columns == {"x": "array", "label": "double", "id": "string"}
    # registry verdict from the validation report, artifacts, outcome.json
    mv = tracker.client.get_model_version("m-out", registered.registry_version)
    assert mv.tags["verdict"] == "failed" and mv.tags["reasons"] == "\n".join(reasons)
    assert report_uri == f"{run.info.artifact_uri}/report"
    names = {a.path for a in tracker.client.list_artifacts(run_id, "report")}
    assert names == {"report/report.json", "report/report.md", "report/data_docs"}
    outcome = json.loads(Path(run.info.artifact_uri.removeprefix("file://"), "outcome.json").read_text())
    assert outcome["report_uri"] == report_uri and outcome["verdict"] == "rejected"


@pytest.mark.parametrize("verdict, report, registry_verdict, status", [
    ("promoted", "passed", "passed", "FINISHED"),
    ("rolled_back", "passed", "rolled_back", "FAILED"),
    ("error", None, "error", "FAILED"),
])
def test_record_outcome_verdicts(tracker, tmp_path, verdict, report, registry_verdict, status):
    run_id = tracker.start_run("m-verdicts")
    registered = tracker.register_version(run_id, "m-verdicts", _savedmodel(tmp_path), serving_version=2)
    reasons = [] if verdict == "promoted" else [f"{verdict}: why"]
    report_uri = tracker.record_outcome(
        run_id, _outcome("m-verdicts", verdict, 2, reasons), report_dir=_report_dir(tmp_path, report) if report
        else None, reference=None, registry_version=registered.registry_version)
    run = tracker.client.get_run(run_id)
    assert run.info.status == status
    assert run.info.run_name == f"m-verdicts v2 {verdict.replace('_', ' ')}"
    assert tracker.client.get_model_version("m-verdicts", registered.registry_version).tags["verdict"] == registry_verdict
    assert (report_uri is None) == (report is None)
    assert run.inputs.dataset_inputs == []


def test_a_reference_gone_since_validation_costs_only_the_dataset(tracker, tmp_path, caplog):
    run_id = tracker.start_run("m-noref")
    tracker.record_outcome(run_id, _outcome("m-noref", "error", None, ["boom"]), report_dir=None,
                           reference=tmp_path / "gone.parquet", registry_version=None)
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.run_name == "m-noref error"
    assert "not logged as its evaluation dataset" in caplog.text


def test_the_same_bytes_at_another_path_keep_their_own_source(tracker, tmp_path):
    """MLflow reuses a dataset record by name and digest: each run must still name the file it was judged on."""
    sources, contents = [], set()
    for job in ("job-1", "job-2"):
        path = tmp_path / job / "ref.csv"
        path.parent.mkdir()
        path.write_text("a,b\n1,2.5\n")  # the same bytes, as a re-run's fresh checkout has them
        run_id = tracker.start_run("m-src")
        tracker.log_evaluation_dataset(run_id, path)
        (dataset_input,) = tracker.client.get_run(run_id).inputs.dataset_inputs
        sources.append(json.loads(dataset_input.dataset.source)["uri"])
        contents.add(json.loads(dataset_input.dataset.profile)["content_sha256"])
    assert sources == [(tmp_path / job / "ref.csv").as_uri() for job in ("job-1", "job-2")]
    assert len(contents) == 1  # the same data is still recognisable


def test_a_csv_reference_gets_its_columns(tracker, tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("a,b,name\n1,2.5,x\n3,4.5,y\n")
    run_id = tracker.start_run("m-csv")
    tracker.log_evaluation_dataset(run_id, path)
    (dataset_input,) = tracker.client.get_run(run_id).inputs.dataset_inputs
    columns = {c["name"]: c["type"] for c in json.loads(dataset_input.dataset.schema)["mlflow_colspec"]}
    assert columns == {"a": "long", "b": "double", "name": "string"}
    assert json.loads(dataset_input.dataset.profile)["format"] == "csv"
