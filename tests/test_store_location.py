"""One store location for every command: ``--store`` / ``SERVEGATE_STORE`` / ``SERVEGATE_HOME`` / the default.

Each command runs as a subprocess in a brand-new HOME and an empty current
directory. An object store (``s3://``, ``gs://``) is refused up front with exit 2
and a last stderr line that names the location as given, and nothing is created:
not ``./s3:/bucket/store`` (what ``Path("s3://...")`` would quietly become), not
``~/.servegate``. A relative ``--store`` is taken against the current directory
and reported as that absolute path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from servegate.model_store import ModelStore
from tests import modelzoo
from tests.support.cli import run_servegate, start_servegate
NAME = "loc"
OBJECT_STORES = ("s3://bucket/store", "gs://bucket/store")


def cli(home: Path, cwd: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return run_servegate(*args, home=home, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def places(tmp_path) -> tuple[Path, Path]:
    """(HOME, current directory), both empty."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    return home, cwd


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, tiny_savedmodel) -> tuple[Path, Path]:
    """A real tiny SavedModel and its reference file: a deploy that would promote."""
    reference = tmp_path_factory.mktemp("loc-ref") / "reference.parquet"
    pd.DataFrame({"features": list(modelzoo.reference_inputs())}).to_parquet(reference)
    return tiny_savedmodel, reference


def _command(command: str, store: str, model_files: tuple[Path, Path]) -> list[str]:
    if command == "deploy":
        model, reference = model_files
        return ["deploy", "--model", str(model), "--name", NAME, "--reference", str(reference), "--store", store,
                "--json"]
    if command == "demo":
        return ["demo", "--work-dir", store]  # the demo's store is <work dir>/store
    if command == "rollback":
        return ["rollback", "--name", NAME, "--store", store]
    if command == "serve":
        return ["serve", "--name", NAME, "--store", store, "--port", "0", "--grpc-port", "0"]
    return ["status", "--name", NAME, "--store", store]


def _assert_refused(result: subprocess.CompletedProcess, location: str, what: str, places: tuple[Path, Path]):
    assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
    last = result.stderr.strip().splitlines()[-1]
    assert f"{what} '{location}' is an object store" in last, last
    assert "Traceback" not in result.stderr
    for place in places:
        assert list(place.iterdir()) == [], f"{place}: {list(place.rglob('*'))}"


# deploy, status, rollback and serve take s3:// store roots (tests/object_store); gs:// they refuse like the rest.
_TAKE_S3 = ("deploy", "status", "rollback", "serve")
_REFUSING = [(command, location) for command in ["deploy", "status", "rollback", "serve", "demo"]
             for location in OBJECT_STORES if not (command in _TAKE_S3 and location.startswith("s3://"))]


@pytest.mark.parametrize("command, location", _REFUSING)
def test_object_store_flag_is_refused_and_nothing_is_created(command, location, places, model_files):
    result = cli(*places, *_command(command, location, model_files))
    _assert_refused(result, location, "--work-dir" if command == "demo" else "--store", places)
    if command == "deploy":  # --json: the one object, naming the location
        error = json.loads(result.stdout)["error"]
        assert location in error["message"] and error["subject"] == location, error


@pytest.mark.parametrize("command, variable, location", [
    (command, variable, location) for command in ["deploy", "status", "rollback", "serve"]
    for variable, location in [("SERVEGATE_STORE", "s3://bucket/store"), ("SERVEGATE_HOME", "gs://bucket/home")]
    if not (command in _TAKE_S3 and variable == "SERVEGATE_STORE")])
def test_object_store_in_the_environment_is_refused(command, variable, location, places, model_files):
    args = [a for a in _command(command, "unused", model_files)]
    at = args.index("--store")
    del args[at:at + 2]
    result = cli(*places, *args, env={variable: location})
    _assert_refused(result, location, variable, places)


def test_demo_refuses_an_object_store_home(places):
    result = cli(*places, "demo", env={"SERVEGATE_HOME": "s3://bucket/home"})
    _assert_refused(result, "s3://bucket/home", "SERVEGATE_HOME", places)


@pytest.fixture
def two_versions(places, tfs_testdata) -> Path:
    """A store at <cwd>/rel/store whose production holds versions 1 and 2."""
    _, cwd = places
    src = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    store = ModelStore(cwd / "rel" / "store")
    for _ in range(2):
        store.promote(NAME, store.stage(NAME, src))
    return cwd / "rel" / "store"


def test_relative_store_is_taken_against_the_current_directory(places, two_versions):
    home, cwd = places
    absolute = str(two_versions)
    status = cli(home, cwd, "status", "--name", NAME, "--store", "rel/store", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["root"] == absolute

    rolled = cli(home, cwd, "rollback", "--name", NAME, "--store", "rel/store")
    assert rolled.returncode == 0, rolled.stderr
    assert ModelStore(two_versions).serving_version(NAME) == 1

    missing = cli(home, cwd, "status", "--name", "other", "--store", "rel/store")
    assert missing.returncode == 2 and absolute in missing.stderr.strip().splitlines()[-1], missing.stderr

    served = cli(home, cwd, "serve", "--name", "other", "--store", "rel/store")
    assert served.returncode == 2, served.stderr
    assert f"{absolute}/production/other" in served.stderr.strip().splitlines()[-1], served.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["rel"]


@pytest.mark.reliability  # a whole deploy (about a minute on a busy machine)
def test_deploy_with_a_relative_store_reports_the_absolute_path(places, model_files):
    home, cwd = places
    result = cli(home, cwd, *_command("deploy", "rel/store", model_files), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout)
    assert outcome["verdict"] == "promoted" and outcome["store"] == str(cwd / "rel" / "store"), outcome
    assert (cwd / "rel" / "store" / "production" / NAME / "1" / "saved_model.pb").is_file()
    shutil.rmtree(cwd / "rel")
    assert list(cwd.iterdir()) == []


def test_demo_takes_a_relative_work_dir_against_the_current_directory(places):
    """The demo's first line names its work dir (its store is <work dir>/store): absolute. Stopped there."""
    home, cwd = places
    demo = start_servegate("demo", "--work-dir", "rel/demo", home=home, cwd=cwd, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        first = demo.stdout.readline().strip()
    finally:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(30)
    assert first == f"servegate demo in {cwd / 'rel' / 'demo'}", first
    assert sorted(p.name for p in cwd.iterdir()) == ["rel"]
