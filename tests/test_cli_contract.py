"""The CI contract of every command, as CI meets it: a subprocess in a brand-new HOME.

- ``--json`` prints one JSON object on stdout on every exit; an error is
  ``{"verdict": "error", "error": {"kind", "message", "subject"}}`` for every command;
- ``error.subject`` names the thing to fix: a path, a config field, a flag, a URL;
- what can be checked before a run is checked before one: bad input leaves no MLflow
  run, no Prefect flow run, no store version, and reference-file problems are
  refused before the model is exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest

from tests.cli_support import files, home, keras_file  # noqa: F401 (fixtures)
from tests.support.cli import assert_nothing_opened, json_of, run_servegate
from tests.model_store.treeutil import read_only_mount

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


@pytest.mark.reliability  # 28 CLI runs (~45 s): CI's second step
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
