"""Fixtures and helpers for the canary runner tests (process and docker).

Import the fixtures you use by name into a test module; they are not in a
conftest because tests/serving/conftest.py belongs to the bundled server's tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT

HALF_PLUS_TWO = "saved_model_half_plus_two_2_versions"


@pytest.fixture
def isolated_home(tmp_path, monkeypatch) -> Path:
    """SERVEGATE_HOME in a temp dir, so pid files of this test are its own."""
    home = tmp_path / "home"
    monkeypatch.setenv("SERVEGATE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def broken_savedmodel(tiny_savedmodel, tmp_path_factory) -> Path:
    """A copy of the tiny model whose saved_model.pb is garbage: passes the spec check, fails to load."""
    path = tmp_path_factory.mktemp("broken") / "savedmodel"
    shutil.copytree(tiny_savedmodel, path)
    (path / "saved_model.pb").write_bytes(b"this is not a SavedModel protobuf")
    return path


@pytest.fixture(scope="session")
def half_plus_two_versions(tfs_testdata) -> dict[int, Path]:
    """TensorFlow Serving's half_plus_two, two versions (123, 124): y = 0.5 x + 2."""
    base = tfs_testdata / HALF_PLUS_TWO
    return {int(p.name): p for p in sorted(base.iterdir()) if p.name.isdigit()}


@pytest.fixture(scope="session")
def local_image(docker_client) -> str:
    """The registry-free bundled-serving image, built (or found up to date) once per session."""
    from servegate.serving.runners.image import ensure_local_image

    return ensure_local_image(client=docker_client)


def predict(rest_url: str, model: str, instances, *, version: int | None = None, label: str | None = None) -> list:
    path = f"/v1/models/{model}"
    if version is not None:
        path += f"/versions/{version}"
    if label is not None:
        path += f"/labels/{label}"
    response = requests.post(f"{rest_url}{path}:predict", json={"instances": instances}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


# A parent process that starts a canary, reports it on stdout, then waits to be SIGKILLed.
_PARENT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from servegate.serving.runners import CanarySpec, make_runner
    kind, name, version, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    options = json.loads(sys.argv[5])
    runner = make_runner(kind, CanarySpec(name, {version: Path(path)}, run_id="killed-run"), **options)
    runner.start()
    info = {"pid": getattr(runner, "pid", None), "container": getattr(runner.container, "id", None)
            if kind == "docker" else None}
    print(json.dumps(info), flush=True)
    time.sleep(600)
""")


def start_and_kill_parent(kind: str, name: str, version: int, path: Path, options: dict | None = None,
                          env: dict | None = None) -> dict:
    """Run a parent that starts a ``kind`` canary, SIGKILL it once the canary is up; return what it reported."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, kind, name, str(version), str(path),
                               json.dumps(options or {})], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=REPO_ROOT, env={**os.environ, **(env or {})}, text=True)
    try:
        line = parent.stdout.readline()
        if not line:
            raise AssertionError(f"parent exited before starting its canary: {parent.stderr.read()}")
        info = json.loads(line)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
    return info


def wait_for(condition, timeout: float = 10.0, interval: float = 0.1) -> bool:
    """Poll ``condition()`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval)
