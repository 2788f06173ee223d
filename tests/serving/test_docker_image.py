"""The registry-free local image: its plan, its root file system, idempotent and key-driven builds."""

from __future__ import annotations

import io
import json
import sys
import tarfile

import docker.errors
import pytest

from servegate.serving.runners import image
from tests.serving.runner_fixtures import local_image  # noqa: F401


def test_plan_mounts_python_venv_source_and_system_dirs():
    plan = image.plan()
    covered = lambda path: any(path == m or path.startswith(m + "/") for m in plan.mounts)  # noqa: E731
    import servegate
    from pathlib import Path

    for path in (sys.base_prefix, sys.prefix, str(Path(servegate.__file__).resolve().parent), "/usr"):
        assert covered(str(Path(path).resolve())), path
    # No mount nested in another.
    assert not any(a != b and a.startswith(b + "/") for a in plan.mounts for b in plan.mounts)
    assert plan.python == sys.executable
    assert "--bind_address=0.0.0.0" in plan.entrypoint and '"$@"' in plan.entrypoint
    # The container imports the servegate that built the image (its source is among the mounts).
    assert f'export PYTHONPATH="{Path(servegate.__file__).resolve().parent.parent}' in plan.entrypoint


def test_rootfs_is_tiny_and_has_the_contract_dirs():
    plan = image.plan()
    data = image.rootfs_tarball(plan)
    assert len(data) < 64 * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["models"].isdir() and members["tmp"].mode == 0o1777
        assert members["servegate/entrypoint.sh"].mode & 0o111
        assert tar.extractfile("servegate/entrypoint.sh").read().decode() == plan.entrypoint
        assert b"root:x:0:0" in tar.extractfile("etc/passwd").read()
        for path, target in plan.symlinks:
            assert members[path].issym() and members[path].linkname == target


@pytest.mark.docker
def test_local_image_labels_and_idempotence(docker_client, local_image):
    built = docker_client.images.get(local_image)
    assert built.labels[image.BUILD_KEY_LABEL] == image.plan().build_key
    assert tuple(json.loads(built.labels[image.HOST_MOUNTS_LABEL])) == image.plan().mounts
    config = built.attrs["Config"]
    assert config["Entrypoint"] == [image.ENTRYPOINT]
    assert "MODEL_BASE_PATH=/models" in config["Env"] and set(config["ExposedPorts"]) == {"8500/tcp", "8501/tcp"}
    assert image.ensure_local_image(local_image, client=docker_client) == local_image
    assert docker_client.images.get(local_image).id == built.id  # nothing rebuilt


@pytest.mark.docker
def test_stale_image_is_rebuilt(docker_client):
    tag = "servegate/bundled-serving:test-stale"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("models")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    docker_client.api.import_image_from_data(buffer.getvalue(), repository="servegate/bundled-serving",
                                             tag="test-stale", changes=[f"LABEL {image.BUILD_KEY_LABEL}=old"])
    stale_id = docker_client.images.get(tag).id
    try:
        image.ensure_local_image(tag, client=docker_client)
        rebuilt = docker_client.images.get(tag)
        assert rebuilt.id != stale_id and rebuilt.labels[image.BUILD_KEY_LABEL] == image.plan().build_key
    finally:
        for name in (tag, stale_id):
            try:
                docker_client.images.remove(name, force=True)
            except docker.errors.ImageNotFound:
                pass


@pytest.mark.docker
def test_build_without_cli(docker_client, local_image):
    import subprocess

    done = subprocess.run([sys.executable, "-m", "servegate.serving.runners.image"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == image.LOCAL_IMAGE_TAG
