"""The CI contract of every command, as CI meets it: a subprocess in a brand-new HOME.

- ``--json`` prints one JSON object on stdout on every exit; an error is
  ``{"verdict": "error", "error": {"kind", "message", "subject"}}`` for every command;
- ``error.subject`` names the thing to fix: a path, a config field, a flag, a URL;
- what can be checked before a run is checked before one: bad input leaves no MLflow
  database, no Prefect database, no store version, and reference-file problems are
  refused before the model is exported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from tests.model_store.treeutil import read_only_mount
from tests.support.cli import assert_nothing_opened, json_of, run_servegate


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    """A real tiny Keras 3 regressor as a .keras file: input ``features`` float32 [-1, 4]."""
    from tests import modelzoo

    path = tmp_path_factory.mktemp("keras") / "model.keras"
    modelzoo.regressor().save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Reference files, good and bad, for both models."""
    out = tmp_path_factory.mktemp("refs")
    x = np.linspace(0, 1, 16, dtype="float32")
    paths = {name: out / f"{name}" for name in (
        "hp2.parquet", "hp2-typo.parquet", "hp2-nan.csv", "empty.csv", "header-only.csv", "zero-rows.parquet",
        "features.parquet", "features-typo.parquet", "features-nan.parquet", "bad.yaml", "unknown.yaml",
        "broken.yaml", "empty.keras", "text.keras", "notes.txt")}
    pd.DataFrame({"x": x, "label": 0.5 * x + 2}).to_parquet(paths["hp2.parquet"])
    pd.DataFrame({"xx": x}).to_parquet(paths["hp2-typo.parquet"])
    pd.DataFrame({"x": np.where(np.arange(16) == 5, np.nan, x)}).to_csv(paths["hp2-nan.csv"], index=False)
    paths["empty.csv"].write_bytes(b"")
    paths["header-only.csv"].write_text("x,label\n")
    pd.DataFrame({"x": np.array([], dtype="float32")}).to_parquet(paths["zero-rows.parquet"])
    rows = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    pd.DataFrame({"features": list(rows)}).to_parquet(paths["features.parquet"])
    pd.DataFrame({"featurs": list(rows)}).to_parquet(paths["features-typo.parquet"])
    rows[3, 1] = np.nan
    pd.DataFrame({"features": list(rows)}).to_parquet(paths["features-nan.parquet"])
    paths["bad.yaml"].write_text("parity:\n  atol: -1\n")
    paths["unknown.yaml"].write_text("quality:\n  max_maee: 1\n")
    paths["broken.yaml"].write_text("parity: [\n")
    paths["empty.keras"].write_bytes(b"")
    paths["text.keras"].write_text("not a model")
    paths["notes.txt"].write_text("notes")
    return paths


# --------------------------------------------------------------------------- the table


@dataclass
class Case:
    """One bad input: the arguments (from the fixtures), the error kind and the subject expected."""

    id: str
    args: Callable[[dict], list[str]]
    kind: str
    subject: Callable[[dict], str]
    env: Callable[[dict], dict] = field(default=lambda f: {})


def _deploy(model: str = "hp2", reference: str = "hp2.parquet", *extra: str) -> Callable[[dict], list[str]]:
    def args(f: dict) -> list[str]:
        model_path = str(f[model]) if model in f else model
        ref_path = str(f[reference]) if reference in f else reference
        return ["deploy", "--model", model_path, "--name", "m", "--reference", ref_path, "--json",
                *[str(f[e]) if e in f else e for e in extra]]
    return args


def _path(key: str) -> Callable[[dict], str]:
    return lambda f: str(f[key])


CASES = [
    Case("model missing", _deploy("{home}/gone.keras"), "ModelFileMissingError", lambda f: f"{f['home']}/gone.keras"),
    Case("model 0 bytes", _deploy("empty.keras"), "ModelFileEmptyError", _path("empty.keras")),
    Case("model not a zip", _deploy("text.keras"), "NotAModelError", _path("text.keras")),
    Case("model format", _deploy("notes.txt"), "UnsupportedModelFormatError", _path("notes.txt")),
    Case("reference missing", _deploy("hp2", "{home}/ref.parquet"), "ReferenceError",
         lambda f: f"{f['home']}/ref.parquet"),
    Case("reference a directory", _deploy("hp2", "home"), "ReferenceError", _path("home")),
    Case("reference 0 bytes", _deploy("hp2", "empty.csv"), "ReferenceError", _path("empty.csv")),
    Case("reference header only", _deploy("hp2", "header-only.csv"), "ReferenceError", _path("header-only.csv")),
    Case("reference 0 rows", _deploy("hp2", "zero-rows.parquet"), "ReferenceError", _path("zero-rows.parquet")),
    Case("reference typo'd column", _deploy("hp2", "hp2-typo.parquet"), "ReferenceError", _path("hp2-typo.parquet")),
    Case("reference NaN", _deploy("hp2", "hp2-nan.csv"), "ReferenceError", _path("hp2-nan.csv")),
    Case("config missing", _deploy("hp2", "hp2.parquet", "--config", "{home}/v.yaml"), "ValidationConfigError",
         lambda f: f"{f['home']}/v.yaml"),
    Case("config field out of range", _deploy("hp2", "hp2.parquet", "--config", "bad.yaml"),
         "ValidationConfigError", lambda f: "parity.atol"),
    Case("config unknown field", _deploy("hp2", "hp2.parquet", "--config", "unknown.yaml"),
         "ValidationConfigError", lambda f: "quality.max_maee"),
    Case("config does not parse", _deploy("hp2", "hp2.parquet", "--config", "broken.yaml"),
         "ValidationConfigError", _path("broken.yaml")),
    Case("name", lambda f: ["deploy", "--model", str(f["hp2"]), "--name", "../m", "--reference",
                            str(f["hp2.parquet"]), "--json"], "InvalidModelName", lambda f: "--name"),
    Case("serving", _deploy("hp2", "hp2.parquet", "--serving", "vm"), "ConfigError", lambda f: "--serving"),
    Case("custom objects with a SavedModel", _deploy("hp2", "hp2.parquet", "--custom-objects", "mylib"),
         "LoadOptionNotApplicableError", lambda f: "--custom-objects"),
    Case("store below a file", _deploy("hp2", "hp2.parquet", "--store", "{home}/notes/store"), "StoreNotWritable",
         lambda f: f"{f['home']}/notes/store"),
    Case("MLflow server unreachable", _deploy(), "TrackingError", lambda f: f["closed_url"],
         env=lambda f: {"MLFLOW_TRACKING_URI": f["closed_url"]}),
    Case("Prefect API unreachable", _deploy(), "OrchestrationError", lambda f: f["closed_url"] + "/api",
         env=lambda f: {"PREFECT_API_URL": f["closed_url"] + "/api"}),
    Case("missing flag", lambda f: ["deploy", "--name", "m", "--json"], "MissingParameter", lambda f: "--model"),
    Case("status: unknown model", lambda f: ["status", "--name", "m", "--json"], "UnknownModel", lambda f: "--name"),
    Case("status: bad name", lambda f: ["status", "--name", "a/b", "--json"], "InvalidModelName", lambda f: "--name"),
    Case("status: store is a file", lambda f: ["status", "--name", "m", "--store", str(f["notes.txt"]), "--json"],
         "StoreNotWritable", _path("notes.txt")),
    Case("status: unknown flag", lambda f: ["status", "--name", "m", "--bogus", "--json"], "NoSuchOption",
         lambda f: "--bogus"),
    Case("rollback: unknown model", lambda f: ["rollback", "--name", "m", "--json"], "UnknownModel",
         lambda f: "--name"),
    Case("rollback: --to not a number", lambda f: ["rollback", "--name", "m", "--to", "two", "--json"],
         "InvalidVersion", lambda f: "--to"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_error_is_one_json_object_whose_subject_names_the_thing(case, home, files, hp2, closed_port_url):
    (home / "notes").write_text("a file where a directory would be")
    f = {**files, "hp2": hp2, "home": home, "closed_url": closed_port_url}
    args = [a.format(home=home) for a in case.args(f)]
    result = run_servegate(*args, env=case.env(f), home=home)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-2000:])
    data = json_of(result)
    assert data["verdict"] == "error", data
    error = data["error"]
    assert set(error) == {"kind", "message", "subject"}, error
    assert (error["kind"], error["subject"]) == (case.kind, case.subject(f)), error
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if args[0] == "deploy" and case.kind != "MissingParameter":
        assert_nothing_opened(home)


# --------------------------------------------------------------------------- status and rollback


def test_status_and_rollback_json_on_success_and_error(home, hp2):
    from servegate.model_store import ModelStore

    store = home / "store"
    s = ModelStore(store)
    s.promote("m", s.stage("m", hp2))
    status = run_servegate("status", "--name", "m", "--store", str(store), "--json", home=home)
    assert status.returncode == 0 and json_of(status)["serving_version"] == 1
    nothing = run_servegate("rollback", "--name", "m", "--store", str(store), "--json", home=home)
    assert nothing.returncode == 2
    error = json_of(nothing)["error"]
    assert error["kind"] == "NothingToRollBackTo" and error["subject"] == "--name", error
    assert nothing.stderr.strip().splitlines()[-1].startswith("error: "), nothing.stderr
    # without --json, stdout stays empty for an error (the message is on stderr)
    plain = run_servegate("rollback", "--name", "m", "--store", str(store), home=home)
    assert plain.returncode == 2 and plain.stdout == "" and "no older version to roll back to" in plain.stderr


def test_rollback_forward_names_the_command_that_exists(home, hp2):
    from servegate.model_store import ModelStore

    store = home / "store"
    s = ModelStore(store)
    s.promote("m", s.stage("m", hp2))
    s.stage("m", hp2)
    result = run_servegate("rollback", "--name", "m", "--to", "2", "--store", str(store), "--json", home=home)
    assert result.returncode == 2
    error = json_of(result)["error"]
    assert error["subject"] == "--to" and "`servegate deploy`" in error["message"], error
    assert "promote a staged" not in error["message"]


def test_the_store_history_keeps_the_rollback_reason(home, hp2):
    from servegate.model_store import ModelStore

    store = home / "store"
    s = ModelStore(store)
    for _ in range(2):
        s.promote("m", s.stage("m", hp2))
    result = run_servegate("rollback", "--name", "m", "--store", str(store), "--reason", "p95 alarm after release",
                           home=home)
    assert result.returncode == 0, result.stderr
    status = run_servegate("status", "--name", "m", "--store", str(store), "--json", home=home)
    data = json_of(status)
    assert data["rejected_reasons"]["2"] == "rolled back: p95 alarm after release", data["rejected_reasons"]
    rollback_lines = [h for h in data["history"] if h["operation"] == "rollback"]
    assert [h["reason"] for h in rollback_lines] == ["rolled back: p95 alarm after release"], data["history"]


# --------------------------------------------------------------------------- up front


@pytest.mark.parametrize("reference, needle", [
    ("features-typo.parquet", "lacks columns the signature needs: input 'features'"),
    ("empty.csv", "empty file (0 bytes)"),
    ("features-nan.parquet", "NaN/null values in 1 row(s)"),
])
def test_reference_problems_of_a_keras_file_are_refused_before_the_export(reference, needle, home, files,
                                                                          keras_file):
    """The inputs come from the .keras file's config: no export (no "export:" progress line), no run."""
    result = run_servegate("deploy", "--model", str(keras_file), "--name", "m", "--reference",
                           str(files[reference]), "--json", home=home)
    assert result.returncode == 2, result.stderr[-2000:]
    error = json_of(result)["error"]
    assert error["kind"] == "ReferenceError" and needle in error["message"], error
    assert error["subject"] == str(files[reference])
    assert "export:" not in result.stderr, result.stderr  # refused before the export began
    assert result.stderr.strip().splitlines()[-1] == f"error: {error['message']}"
    assert_nothing_opened(home)


def test_a_good_reference_is_not_refused_early(home, files, keras_file, closed_port_url):
    """The other side: with a good reference the same model passes the early check and goes on to the
    next check, the Prefect API (here one that does not answer: the error that follows names it)."""
    result = run_servegate("deploy", "--model", str(keras_file), "--name", "m", "--reference",
                           str(files["features.parquet"]), "--json", env={"PREFECT_API_URL": closed_port_url + "/api"},
                           home=home)
    assert result.returncode == 2, result.stderr[-2000:]
    error = json_of(result)["error"]
    assert error["kind"] == "OrchestrationError" and error["subject"] == closed_port_url + "/api", error
    assert_nothing_opened(home)


def test_a_store_path_that_cannot_be_created_is_refused_before_any_run(home, files, hp2):
    (home / "file").write_text("x")
    store = home / "file" / "store"
    result = run_servegate("deploy", "--model", str(hp2), "--name", "m", "--reference",
                           str(files["hp2.parquet"]), "--store", str(store), "--json", home=home)
    assert result.returncode == 2
    error = json_of(result)["error"]
    assert error["kind"] == "StoreNotWritable" and error["subject"] == str(store), error
    assert "cannot create store root" in result.stderr.strip().splitlines()[-1]
    assert "checking the model" not in result.stderr  # refused by the first check, before the export
    assert_nothing_opened(home, store)


def test_a_read_only_store_is_refused_before_any_run(home, files, hp2, tmp_path):
    from servegate.model_store import ModelStore

    mount = tmp_path / "ro"
    with read_only_mount(mount) as make_read_only:
        if make_read_only is None:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        store = mount / "store"
        s = ModelStore(store)
        s.promote("m", s.stage("m", hp2))
        make_read_only()
        result = run_servegate("deploy", "--model", str(hp2), "--name", "m", "--reference",
                               str(files["hp2.parquet"]), "--store", str(store), "--json", home=home)
        assert result.returncode == 2
        error = json_of(result)["error"]
        assert error["kind"] == "StoreNotWritable" and error["subject"] == str(store), error
        assert "read-only filesystem" in result.stderr.strip().splitlines()[-1]
        assert "checking the model" not in result.stderr
        assert not (home / ".servegate" / "mlflow.db").exists()
        assert ModelStore(store).status("m").serving_version == 1


# --------------------------------------------------------------------------- a re-run creates nothing


def _production_from(store: Path, source: Path, digest_of: Path) -> None:
    """Production serving version 1 staged from ``digest_of`` (as a deploy of that model leaves it)."""
    from servegate.attempt.unchanged import MODEL_DIGEST, model_digest
    from servegate.model_store import ModelStore

    s = ModelStore(store)
    s.promote("m", s.stage("m", source, detail={MODEL_DIGEST: model_digest(digest_of)}))


def test_a_rerun_with_the_model_production_serves_creates_nothing(home, files, hp2):
    store = home / "store"
    _production_from(store, hp2, hp2)
    from servegate.model_store import ModelStore

    history = ModelStore(store).layout.history_file("m")
    before = history.read_bytes()
    assert before.count(b"\n") == 2  # stage, promote
    result = run_servegate("deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                           "--store", str(store), "--json", home=home)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json_of(result)
    assert (outcome["verdict"], outcome["version"], outcome["production_version"]) == ("unchanged", 1, 1), outcome
    assert outcome["mlflow_run_id"] is None and outcome["prefect_flow_run_id"] is None
    assert "checking the model" not in result.stderr
    assert_nothing_opened(home, store / "staging")
    assert sorted(p.name for p in (store / "production" / "m").iterdir()) == ["1"]
    assert history.read_bytes() == before  # no history line either
    text = run_servegate("deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                         "--store", str(store), home=home)
    assert text.returncode == 0 and text.stdout.startswith("m: already serving version 1"), text.stdout


@pytest.fixture
def healthy_api_url():
    """A URL whose /health answers 200 (all ``deploy`` asks of a Prefect API before the export), so
    that a deploy that goes past the re-run check reaches the export without starting a Prefect server."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()


@pytest.mark.parametrize("how", ["another model file", "--force-new-version"])
def test_another_model_or_the_flag_deploys_anew(how, home, files, hp2, tmp_path, healthy_api_url):
    """Past the re-run check the deploy goes on: it exports (then a config naming an output the model
    lacks stops it, still before any run)."""
    store = home / "store"
    other = tmp_path / "other"
    shutil.copytree(hp2, other)
    (other / "assets.extra").mkdir(exist_ok=True)
    (other / "assets.extra" / "note.txt").write_text("retrained")  # other bytes: another digest
    _production_from(store, hp2, other if how == "another model file" else hp2)
    config = home / "v.yaml"
    config.write_text("output: nope\n")
    extra = ["--force-new-version"] if how == "--force-new-version" else []
    result = run_servegate("deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                           "--store", str(store), "--config", str(config), "--json", *extra,
                           env={"PREFECT_API_URL": healthy_api_url}, home=home)
    assert result.returncode == 2, result.stderr[-2000:]
    assert json_of(result)["error"]["subject"] == "output"
    assert "export:" in result.stderr


def test_a_rerun_still_checks_its_prefect_api(home, files, hp2, closed_port_url):
    """A re-run with a CI job's Prefect API unreachable is that error, not "unchanged"."""
    store = home / "store"
    _production_from(store, hp2, hp2)
    result = run_servegate("deploy", "--model", str(hp2), "--name", "m", "--reference", str(files["hp2.parquet"]),
                           "--store", str(store), "--json", env={"PREFECT_API_URL": closed_port_url + "/api"},
                           home=home)
    assert result.returncode == 2
    assert json_of(result)["error"]["kind"] == "OrchestrationError"
