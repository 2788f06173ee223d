"""Docker runner errors: unreachable engine, missing image, image needing absent host paths; reap() of containers."""

from __future__ import annotations

import io
import json
import tarfile

import docker.errors
import pytest

from servegate.serving.runners import CanarySpec, DockerUnavailableError, ImageMissingError, reap
from servegate.serving.runners.docker import DockerRunner
from tests.serving.runner_fixtures import (half_plus_two_versions, isolated_home, local_image,  # noqa: F401
                                           start_and_kill_parent)


def test_unreachable_engine_via_base_url_suggests_process(half_plus_two_versions):
    runner = DockerRunner(CanarySpec("hp2", half_plus_two_versions), base_url="tcp://127.0.0.1:9")
    with pytest.raises(DockerUnavailableError, match=r"Docker engine not reachable at tcp://127.0.0.1:9.*"
                                                     r"--serving process"):
        runner.start()
    runner.stop()
    assert runner.logs() == ""


def test_unreachable_engine_via_docker_host(half_plus_two_versions, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(DockerUnavailableError, match=r"not reachable at unix://.*no-docker.sock"):
        DockerRunner(CanarySpec("hp2", half_plus_two_versions)).start()


@pytest.mark.docker
def test_missing_image_says_how_to_get_it(docker_client, half_plus_two_versions, isolated_home):
    runner = DockerRunner(CanarySpec("hp2", half_plus_two_versions), image="servegate/no-such-image:never",
                          client=docker_client)
    with pytest.raises(ImageMissingError, match=r"'servegate/no-such-image:never' is not on the Docker engine: "
                                                r"pull it .*docker pull.*servegate.serving.runners.image") as caught:
        runner.start()
    # the CLI's words, not the Python API's (DockerRunner(pull=True))
    assert "servegate deploy --serving docker --docker-image servegate/bundled-serving:local" in str(caught.value)
    assert "DockerRunner" not in str(caught.value) and "pull=True" not in str(caught.value)
    runner.stop()


@pytest.fixture
def image_with_absent_host_path(docker_client):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("models")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    tag = "servegate/test-absent-mounts:1"
    label = json.dumps(["/no/such/host/path"], separators=(",", ":"))
    docker_client.api.import_image_from_data(buffer.getvalue(), repository=tag.split(":")[0], tag="1",
                                             changes=[f"LABEL servegate.host-mounts='{label}'"])
    yield tag
    try:
        docker_client.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass


@pytest.mark.docker
def test_image_needing_absent_host_paths_is_refused(docker_client, half_plus_two_versions, isolated_home,
                                                    image_with_absent_host_path):
    runner = DockerRunner(CanarySpec("hp2", half_plus_two_versions), image=image_with_absent_host_path,
                          client=docker_client)
    with pytest.raises(ImageMissingError, match=r"needs host paths that do not exist here: \['/no/such/host/path'\]"):
        runner.start()
    runner.stop()


@pytest.mark.docker
def test_reap_removes_container_of_sigkilled_parent(docker_client, local_image, half_plus_two_versions,
                                                    isolated_home):
    info = start_and_kill_parent("docker", "orphan2", 124, half_plus_two_versions[124],
                                 options={"image": local_image})
    try:
        assert docker_client.containers.get(info["container"]).labels["servegate.model"] == "orphan2"
        report = reap(docker_client=docker_client)
        assert report.docker_checked and info["container"] in report.containers
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(info["container"])
    finally:
        try:
            docker_client.containers.get(info["container"]).remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.mark.docker
def test_reap_leaves_live_owners_containers_unless_model_cleared(docker_client, local_image, half_plus_two_versions,
                                                                 isolated_home):
    runner = DockerRunner(CanarySpec("mine", {124: half_plus_two_versions[124]}), image=local_image,
                          client=docker_client)
    try:
        runner.start()
        container_id = runner.container.id
        assert container_id not in reap(docker_client=docker_client).containers
        docker_client.containers.get(container_id)
        assert reap(docker_client=docker_client, model_name="mine", all_of_model=True).containers == [container_id]
    finally:
        runner.stop()


@pytest.mark.docker
def test_explicit_host_port_in_use(docker_client, local_image, half_plus_two_versions, isolated_home):
    import socket

    from servegate.serving.runners import PortInUseError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = DockerRunner(CanarySpec("hp2", {124: half_plus_two_versions[124]}), image=local_image,
                              client=docker_client, rest_port=port)
        try:
            with pytest.raises(PortInUseError, match=rf"host port \({port}, None\) on 127.0.0.1 is already in use"):
                runner.start()
        finally:
            runner.stop()
        # The container the engine created but could not start was removed.
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(runner.name)
