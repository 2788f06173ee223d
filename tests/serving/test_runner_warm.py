"""The prewarmed bundled server (serving/runners/spare.py + serving/server/spare.py): the runner's first launch uses it,
and an unused one never outlives its owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from servegate.runtime.identity import start_ticks
from servegate.serving.runners import spare
from servegate.serving.runners import CanarySpec, ProcessRunner
from servegate.serving.runners.state import process_state_dir
from tests.conftest import REPO_ROOT
from tests.serving.runner_fixtures import half_plus_two_versions, isolated_home, predict  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def spare_cleanup():
    yield
    spare.discard()


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if start_ticks(pid) is None:
            return True
        time.sleep(0.05)
    return False


def test_first_launch_uses_the_spare(isolated_home, half_plus_two_versions, spare_cleanup):
    assert spare.prewarm("hp2w")
    spare_pid = spare._spare.process.pid
    spare_dir = spare._spare.workdir
    assert str(spare_dir) in " ".join(spare._spare.process.args)  # recognisable by its work dir from the start
    runner = ProcessRunner(CanarySpec("hp2w", half_plus_two_versions, labels={"stable": 123, "canary": 124}))
    try:
        runner.start()
        assert runner.pid == spare_pid and runner.workdir == spare_dir
        assert spare._spare is None  # handed out once
        record = json.loads((process_state_dir() / f"{runner.pid}.json").read_text())
        assert record["server_pid"] == spare_pid and record["workdir"] == str(spare_dir)
        runner.wait_until_available(90)
        assert predict(runner.rest_url, "hp2w", [1.0, 2.0], label="canary") == [2.5, 3.0]
        assert predict(runner.rest_url, "hp2w", [0.0], version=123) == [2.0]
        logs = runner.logs()
        assert "(prewarmed)" in logs and "--model_config_file=" in logs
        assert "Successfully loaded servable version" in logs  # the server's own log, in server.log
    finally:
        runner.stop()
    assert start_ticks(spare_pid) is None and not spare_dir.exists()
    assert not (process_state_dir() / f"{spare_pid}.json").exists()


def test_spare_of_another_model_is_not_used(isolated_home, half_plus_two_versions, spare_cleanup):
    assert spare.prewarm("other-model")
    spare_pid = spare._spare.process.pid
    runner = ProcessRunner(CanarySpec("hp2x", {123: half_plus_two_versions[123]}))
    try:
        runner.start()
        assert runner.pid != spare_pid
        assert "(prewarmed)" not in runner.logs()
    finally:
        runner.stop()
    assert spare._spare is not None and spare._spare.alive()


def test_discard_ends_an_unused_spare_and_its_dir(spare_cleanup):
    assert spare.prewarm("unused")
    assert spare.prewarm("unused")  # one spare per process
    held = spare._spare
    spare.discard()
    assert held.process.poll() is not None and not held.workdir.exists()
    spare.discard()  # twice is fine


_OWNER = textwrap.dedent("""
    import json, sys, time
    from servegate.serving.runners import spare
    spare.prewarm("orphan")
    print(json.dumps({"pid": spare._spare.process.pid, "workdir": str(spare._spare.workdir)}), flush=True)
    time.sleep(600)
""")


def test_spare_of_a_sigkilled_owner_exits_and_removes_its_dir(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", _OWNER], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, TMPDIR=str(tmp_path)))
    try:
        info = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    # End of file on its stdin ends it, even in the middle of TensorFlow's import.
    assert _gone_within(info["pid"], 20), "the spare outlived its SIGKILLed owner"
    deadline = time.monotonic() + 5
    while Path(info["workdir"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(info["workdir"]).exists()
