"""The process runner with the real bundled server: serve, two versions with labels, failures, reaping."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import requests

from servegate.serving.runners import (CanarySpec, DeadlineExceededError, ModelLoadError, ProcessRunner, make_runner,
                                       reap)
from servegate.runtime.identity import start_ticks
from servegate.ports import pick_free_ports
from servegate.serving.runners.state import process_state_dir
from tests.serving.runner_fixtures import (broken_savedmodel, half_plus_two_versions, isolated_home,  # noqa: F401
                                           predict, start_and_kill_parent, wait_for)

pytestmark = pytest.mark.slow


@pytest.fixture
def runners():
    """Runners made by a test; all stopped afterwards, also when the test fails."""
    made = []
    yield made
    for runner in made:
        runner.stop()


def test_tiny_model_start_available_predict_stop(isolated_home, tiny_savedmodel, runners):
    import tensorflow as tf

    runner = make_runner("process", CanarySpec("tiny", {1: tiny_savedmodel}, run_id="r1"))
    runners.append(runner)
    runner.start()
    pid_file = process_state_dir() / f"{runner.pid}.json"
    record = json.loads(pid_file.read_text())
    assert record["owner_pid"] == os.getpid() and record["model"] == "tiny" and record["run_id"] == "r1"
    assert os.getpgid(runner.pid) == runner.pid  # its own process group

    runner.wait_until_available(60)
    assert runner.rest_url.startswith("http://127.0.0.1:") and runner.grpc_target.startswith("127.0.0.1:")
    rows = np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4)
    served = np.array(predict(runner.rest_url, "tiny", rows.tolist()))
    expected = tf.saved_model.load(str(tiny_savedmodel)).signatures["serving_default"](
        features=tf.constant(rows))["output_0"].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    assert "tiny" in runner.logs()

    server_pid, workdir = runner.pid, runner.workdir
    runner.stop()
    assert start_ticks(server_pid) is None
    assert not pid_file.exists() and not workdir.exists()
    assert "servegate.serving" in runner.logs()  # the log text outlives the work dir
    runner.stop()  # twice is fine


def test_two_versions_with_labels(isolated_home, half_plus_two_versions, runners):
    spec = CanarySpec("hp2", half_plus_two_versions, labels={"stable": 123, "canary": 124})
    runner = ProcessRunner(spec)
    runners.append(runner)
    with runner:
        runner.wait_until_available(60)
        status = requests.get(f"{runner.rest_url}/v1/models/hp2", timeout=5).json()
        assert sorted(s["version"] for s in status["model_version_status"]) == ["123", "124"]
        assert all(s["state"] == "AVAILABLE" for s in status["model_version_status"])
        for label in ("stable", "canary"):
            assert predict(runner.rest_url, "hp2", [1.0, 2.0, 5.0], label=label) == [2.5, 3.0, 4.5]
        assert predict(runner.rest_url, "hp2", [0.0], version=123) == [2.0]
        # The canary base path holds only the spec's versions, as symlinks.
        base = runner.workdir / "models" / "hp2"
        assert sorted(p.name for p in base.iterdir()) == ["123", "124"]
        assert "--model_config_file=" in runner.logs()


def test_broken_model_fails_fast_with_log_tail(isolated_home, broken_savedmodel, runners):
    runner = ProcessRunner(CanarySpec("broken", {3: broken_savedmodel}))
    runners.append(runner)
    runner.start()
    with pytest.raises(ModelLoadError) as info:
        runner.wait_until_available(120)
    message = str(info.value)
    assert "'broken'" in message and "versions 3" in message and "exited with code" in message
    assert "--- server log (last lines) ---" in message and "broken" in message.split("---")[-1]
    runner.stop()
    runner.stop()


def test_deadline_names_deadline_and_last_status(isolated_home, half_plus_two_versions, runners):
    runner = ProcessRunner(CanarySpec("hp2", half_plus_two_versions))
    runners.append(runner)
    runner.start()
    with pytest.raises(DeadlineExceededError, match=r"within the deadline of 0.3 s .*last status seen: version 123"):
        runner.wait_until_available(0.3)
    pid = runner.pid
    runner.stop()
    assert start_ticks(pid) is None


def test_port_taken_after_pick_restarts_on_new_ports(isolated_home, half_plus_two_versions, runners, monkeypatch):
    # Narrow seam: the free-port check is told a held port is free, as in a race with another process;
    # the server fails to bind it and the runner must restart on new ports.
    from servegate.serving.runners import process

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = taken.getsockname()[1]
        picks = iter([[held, pick_free_ports(1)[0]]])
        monkeypatch.setattr(process, "port_is_free", lambda port: True)
        runner = ProcessRunner(CanarySpec("hp2", {124: half_plus_two_versions[124]}),
                               port_picker=lambda n: next(picks, None) or pick_free_ports(n))
        runners.append(runner)
        runner.start()
        assert runner.rest_url.endswith(f":{held}")
        runner.wait_until_available(120)
        assert not runner.rest_url.endswith(f":{held}")
        assert predict(runner.rest_url, "hp2", [2.0]) == [3.0]
        assert "already in use" in runner.logs(tail=10_000).lower()


def test_reap_kills_canary_of_sigkilled_parent(isolated_home, half_plus_two_versions):
    info = start_and_kill_parent("process", "orphan", 124, half_plus_two_versions[124])
    server_pid = info["pid"]
    pid_file = process_state_dir() / f"{server_pid}.json"
    try:
        assert start_ticks(server_pid) is not None, "the canary should outlive its killed parent"
        assert pid_file.exists()
        report = reap(docker=False)
        assert report.processes == [server_pid]
        assert wait_for(lambda: start_ticks(server_pid) is None, timeout=10)
        assert not pid_file.exists()
        assert reap(docker=False).processes == []
    finally:
        if start_ticks(server_pid) is not None:
            os.killpg(server_pid, 9)


def test_reap_leaves_canaries_of_live_owners(isolated_home, half_plus_two_versions, runners):
    runner = ProcessRunner(CanarySpec("hp2", {124: half_plus_two_versions[124]}))
    runners.append(runner)
    runner.start()
    assert reap(docker=False).processes == []
    assert start_ticks(runner.pid) is not None
    # ... unless told to clear the model.
    assert reap(docker=False, model_name="hp2", all_of_model=True).processes == [runner.pid]
    assert wait_for(lambda: runner._exit_status() is not None, timeout=10)


def test_runner_left_running_is_stopped_at_interpreter_exit(isolated_home, half_plus_two_versions, tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path\n"
        "from servegate.serving.runners import CanarySpec, ProcessRunner\n"
        "runner = ProcessRunner(CanarySpec('atexit', {124: Path(sys.argv[1])}))\n"
        "runner.start(); print(runner.pid, flush=True)\n"
        "del runner\n"
        "sys.exit(3)  # no stop(): the exit hook must end the server\n")
    done = subprocess.run([sys.executable, "-c", script, str(half_plus_two_versions[124])], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    server_pid = int(done.stdout.split()[0])
    assert start_ticks(server_pid) is None
    assert list(process_state_dir().glob("*.json")) == []
