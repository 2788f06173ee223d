"""Shared fixtures: one tiny trained model per session, test data paths, Docker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Keep Prefect's local database and settings out of the user's ~/.prefect: the
# CLI tests run `servegate deploy` on a local ephemeral Prefect, which writes there.
if "PREFECT_HOME" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _prefect_home = tempfile.mkdtemp(prefix="servegate-tests-prefect-")
    os.environ["PREFECT_HOME"] = _prefect_home
    atexit.register(shutil.rmtree, _prefect_home, ignore_errors=True)

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items) -> None:
    """Leave the long proofs marked ``reliability`` out unless the marker expression names it
    (deselected, not skipped): ``pytest -m reliability`` is CI's second step."""
    if "reliability" in (config.getoption("markexpr") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("reliability") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def tfs_testdata() -> Path:
    """TensorFlow Serving's own test models (../shared/tfs-testdata)."""
    path = Path(os.environ.get("SERVEGATE_TFS_TESTDATA", REPO_ROOT.parent / "shared" / "tfs-testdata"))
    if not (path / "saved_model_half_plus_two_cpu").is_dir():
        pytest.fail(f"TensorFlow Serving test data not found at {path} (set SERVEGATE_TFS_TESTDATA)")
    return path


@pytest.fixture(scope="session")
def hp2(tmp_path_factory, tfs_testdata) -> Path:
    """TF Serving's half_plus_two SavedModel (input ``x`` float32 [-1, 1], output ``y``), copied once per
    session out of the shared test data; every test reads it, none writes to it."""
    import shutil

    path = tmp_path_factory.mktemp("hp2") / "hp2"
    shutil.copytree(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", path)
    return path


@pytest.fixture(scope="session")
def tiny_savedmodel(tmp_path_factory) -> Path:
    """A tiny real Keras regressor exported as a SavedModel, built once per session."""
    from tests import modelzoo

    return modelzoo.export(modelzoo.regressor(), tmp_path_factory.mktemp("tiny") / "savedmodel")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and database for the whole session (the flow and attempt tests)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    from tests.support.ports import free_port

    return f"http://127.0.0.1:{free_port()}"


def _docker_required() -> bool:
    return os.environ.get("SERVEGATE_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def docker_client():
    """A client of a reachable Docker engine.

    Skips when no engine answers, except with SERVEGATE_REQUIRE_DOCKER=1 (CI),
    where a missing engine fails the test instead.
    """
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker.errors.DockerException and connection errors
        if _docker_required():
            pytest.fail(f"SERVEGATE_REQUIRE_DOCKER=1 but no Docker engine is reachable: {exc}")
        pytest.skip(f"no Docker engine reachable: {exc}")
    return client
