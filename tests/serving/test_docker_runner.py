"""The docker runner against a real Docker engine, with the registry-free local image.

Skips without an engine; fails instead with SERVEGATE_REQUIRE_DOCKER=1 (CI).
"""

from __future__ import annotations

import os

import docker.errors
import pytest
import requests

from servegate.serving.runners import CanarySpec, ModelLoadError, make_runner
from servegate.serving.runners.docker import DockerRunner
from tests.serving.runner_fixtures import (broken_savedmodel, half_plus_two_versions, local_image,  # noqa: F401
                                           predict, start_and_kill_parent, wait_for)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runner-state")


@pytest.fixture(scope="module")
def hp2_canary(docker_client, local_image, half_plus_two_versions, state_dir):
    """One running canary container for the module: half_plus_two 123 + 124 with labels, AVAILABLE."""
    spec = CanarySpec("hp2", half_plus_two_versions, labels={"stable": 123, "canary": 124}, run_id="run-42")
    runner = make_runner("docker", spec, image=local_image, client=docker_client, mem_limit="2g",
                         nano_cpus=1_500_000_000, state_dir=state_dir)
    try:
        runner.start()
        runner.wait_until_available(90)
        yield runner
    finally:
        runner.stop()


def test_available_and_predicts_over_published_port(hp2_canary):
    status = requests.get(f"{hp2_canary.rest_url}/v1/models/hp2", timeout=5).json()
    assert sorted((s["version"], s["state"]) for s in status["model_version_status"]) == [
        ("123", "AVAILABLE"), ("124", "AVAILABLE")]
    assert predict(hp2_canary.rest_url, "hp2", [1.0, 2.0, 5.0], label="canary") == [2.5, 3.0, 4.5]
    assert predict(hp2_canary.rest_url, "hp2", [0.0], version=123) == [2.0]
    host, port = hp2_canary.grpc_target.split(":")
    assert host == "127.0.0.1" and int(port) > 0


def test_model_mounts_are_read_only(hp2_canary, half_plus_two_versions):
    mounts = {m["Destination"]: m for m in hp2_canary.container.attrs["Mounts"]}
    for version, path in half_plus_two_versions.items():
        mount = mounts[f"/models/hp2/{version}"]
        assert mount["RW"] is False and mount["Source"] == str(path.resolve())
    assert mounts["/servegate-config/models.config"]["RW"] is False
    assert all(m["RW"] is False for m in mounts.values())  # host Python, venv and source too
    code, output = hp2_canary.container.exec_run(["sh", "-c", "touch /models/hp2/124/written-by-canary"])
    assert code != 0 and b"Read-only file system" in output
    assert not (half_plus_two_versions[124] / "written-by-canary").exists()


def test_ports_published_on_loopback_only(hp2_canary):
    published = hp2_canary.container.attrs["NetworkSettings"]["Ports"]
    assert set(published) == {"8500/tcp", "8501/tcp"}
    for bindings in published.values():
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)


def test_labels_and_limits(hp2_canary):
    attrs = hp2_canary.container.attrs
    labels = attrs["Config"]["Labels"]
    assert labels["servegate.managed"] == "true"
    assert labels["servegate.model"] == "hp2"
    assert labels["servegate.version"] == "124"   # the "canary" label's version
    assert labels["servegate.versions"] == "123,124"
    assert labels["servegate.run_id"] == "run-42"
    assert labels["servegate.owner_pid"] == str(os.getpid())
    assert attrs["HostConfig"]["Memory"] == 2 * 1024 ** 3
    assert attrs["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert attrs["Config"]["Env"].count("MODEL_NAME=hp2") == 1
    assert "hp2" in hp2_canary.logs(tail=50)


def test_stop_removes_container_and_keeps_logs(docker_client, local_image, half_plus_two_versions, state_dir):
    runner = DockerRunner(CanarySpec("hp2", {124: half_plus_two_versions[124]}), image=local_image,
                          client=docker_client, state_dir=state_dir)
    try:
        runner.start()
        container_id = runner.container.id
        assert docker_client.containers.get(container_id).status in ("created", "running")
    finally:
        runner.stop()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_id)
    runner.stop()  # twice is fine


def test_broken_model_error_has_container_log_tail(docker_client, local_image, broken_savedmodel, state_dir):
    runner = DockerRunner(CanarySpec("broken", {3: broken_savedmodel}), image=local_image, client=docker_client,
                          state_dir=state_dir)
    try:
        runner.start()
        with pytest.raises(ModelLoadError) as info:
            runner.wait_until_available(120)
    finally:
        runner.stop()
    message = str(info.value)
    assert "'broken'" in message and "exited with code 1" in message and "servegate-canary-broken-" in message
    assert "--- server log (last lines) ---" in message and "/models/broken/3" in message


def test_container_of_sigkilled_parent_is_reaped_by_next_start(docker_client, local_image, half_plus_two_versions,
                                                               state_dir):
    info = start_and_kill_parent("docker", "orphan", 124, half_plus_two_versions[124],
                                 options={"image": local_image, "state_dir": str(state_dir)})
    orphan_id = info["container"]
    try:
        orphan = docker_client.containers.get(orphan_id)
        assert orphan.labels["servegate.run_id"] == "killed-run"
        runner = DockerRunner(CanarySpec("next", {124: half_plus_two_versions[124]}), image=local_image,
                              client=docker_client, state_dir=state_dir)
        try:
            runner.start()  # reaps first
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(orphan_id)
        finally:
            runner.stop()
    finally:
        try:
            docker_client.containers.get(orphan_id).remove(force=True)
        except docker.errors.NotFound:
            pass
