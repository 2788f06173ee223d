"""The ``docker`` runner: a canary model server in a container, via docker-py.

Any image honouring TensorFlow Serving's container contract works: the model
under ``/models/<MODEL_NAME>``, REST on 8501, gRPC on 8500, extra server flags
after the image name (the entrypoint passes them on). The default is the real
``tensorflow/serving`` at a pinned tag; tests and CI use the registry-free
local image from :mod:`servegate.serving.runners.image`. An image carrying the
``servegate.host-mounts`` label (a JSON list of host paths) gets those paths
bind-mounted read-only at the same place, which is how the local image finds
the host's Python, virtualenv and servegate source.

Life cycle (see base.py):

- ``start()`` connects to the engine (:class:`DockerUnavailableError` if it
  does not answer), reaps containers and processes of killed runs, checks the
  image is present (:class:`ImageMissingError`), then runs a container named
  ``servegate-canary-<model>-<random>`` with each spec version bind-mounted
  read-only at ``/models/<model>/<version>`` (and, for several versions or
  labels, a generated model config mounted read-only), ports published on
  127.0.0.1 only at random host ports (read back from the container), memory
  and CPU limits, and labels naming the model, versions, run id and owner
  (pid, start time, host) for the reaper.
- ``wait_until_available`` polls the published REST port; a container that
  exits ends the wait at once with its log tail.
- ``stop()`` keeps the container's log text, force-removes the container and
  deletes the temp dir holding the generated config.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Sequence

from servegate.errors import ServingError
from servegate.runtime import identity as _proc
from servegate.serving.runners.base import CanarySpec, ModelServerRunner, model_config_text
from servegate.serving.runners.errors import (DockerUnavailableError, ImageMissingError, ModelLoadError,
                                              PortInUseError, with_log_tail)
from servegate.serving.runners.reap import MANAGED_LABEL, reap

#: TensorFlow Serving's official image, pinned so that a canary is reproducible.
DEFAULT_IMAGE = "tensorflow/serving:2.18.0"
HOST_MOUNTS_LABEL = "servegate.host-mounts"
#: The bundled server's image, built locally by :mod:`servegate.serving.runners.image` (which imports this module).
LOCAL_IMAGE_TAG = "servegate/bundled-serving:local"
REST_CONTAINER_PORT = 8501
GRPC_CONTAINER_PORT = 8500
CONFIG_TARGET = "/servegate-config/models.config"
DEFAULT_MEM_LIMIT = "4g"
DEFAULT_NANO_CPUS = 2_000_000_000  # two CPUs


def connect(base_url: str | None = None, timeout: int = 10):
    """A docker-py client that has answered a ping, or :class:`DockerUnavailableError`."""
    import docker
    import requests

    where = base_url or os.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise DockerUnavailableError(
            f"Docker engine not reachable at {where}: {exc}. Start Docker (or fix DOCKER_HOST), "
            "or run the canary without Docker: --serving process",
            subject=base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock") from exc
    return client


class DockerRunner(ModelServerRunner):
    """A canary model server in a container; see the module docstring."""

    kind = "docker"

    def __init__(self, spec: CanarySpec, *, image: str = DEFAULT_IMAGE, client=None, base_url: str | None = None,
                 mem_limit: str | int = DEFAULT_MEM_LIMIT, nano_cpus: int = DEFAULT_NANO_CPUS,
                 rest_port: int | None = None, grpc_port: int | None = None, extra_args: Sequence[str] = (),
                 env: dict[str, str] | None = None, pull: bool = False, reap_first: bool = True,
                 load_retries: int | None = 0, state_dir: Path | None = None) -> None:
        super().__init__(spec)
        self.image = image
        self.base_url = base_url
        self.mem_limit = mem_limit
        self.nano_cpus = nano_cpus
        self.host_ports = (rest_port, grpc_port)
        # A canary should fail fast: TF Serving's default retries a failed load 5 times, a minute apart.
        retries = [f"--max_num_load_retries={load_retries}"] if load_retries is not None else []
        self.extra_args = retries + list(extra_args)
        self.env = dict(env or {})
        self.pull = pull
        self.reap_first = reap_first
        self.state_dir = state_dir
        self.name = f"servegate-canary-{spec.model_name}-{uuid.uuid4().hex[:8]}"
        self._client = client
        self._container = None
        self._ports: tuple[int, int] | None = None
        self._tmpdir: Path | None = None
        self._started = False
        self._final_log: str | None = None

    def __repr__(self) -> str:
        return f"DockerRunner(model={self.spec.model_name!r}, image={self.image!r}, container={self.name!r})"

    @property
    def container(self):
        """The docker-py Container (None before start and after stop)."""
        return self._container

    # -- endpoints -------------------------------------------------------------------------------
    def _require_ports(self) -> tuple[int, int]:
        if self._ports is None:
            self._ports = self._read_ports()
        return self._ports

    def _read_ports(self) -> tuple[int, int]:
        if self._container is None:
            raise ServingError(f"{self!r}: no endpoint before start()")
        self._container.reload()
        published = self._container.attrs["NetworkSettings"]["Ports"] or {}
        try:
            rest = int(published[f"{REST_CONTAINER_PORT}/tcp"][0]["HostPort"])
            grpc = int(published[f"{GRPC_CONTAINER_PORT}/tcp"][0]["HostPort"])
        except (KeyError, IndexError, TypeError) as exc:
            # No ports: the container is already gone (exited before its ports were published).
            raise ModelLoadError(with_log_tail(
                f"{self!r}: container has no published ports (state {self._container.status})",
                self.logs(tail=30))) from exc
        return rest, grpc

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        import docker.errors
        from docker.types import Mount

        if self._started:
            raise ServingError(f"{self!r}: start() was already called; make a new runner for a new container")
        self._started = True
        self._track()
        if self._client is None:
            self._client = connect(self.base_url)
        if self.reap_first:
            reap(docker_client=self._client, state_dir=self.state_dir)
        image = self._get_image()

        mounts = [Mount(target=f"/models/{self.spec.model_name}/{version}", source=str(path), type="bind",
                        read_only=True) for version, path in self.spec.versions.items()]
        args = list(self.extra_args)
        if self.spec.needs_config_file:
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f"servegate-canary-{self.spec.model_name}-"))
            config = self._tmpdir / "models.config"
            config.write_text(model_config_text(self.spec, f"/models/{self.spec.model_name}"))
            config.chmod(0o644)
            mounts.append(Mount(target=CONFIG_TARGET, source=str(config), type="bind", read_only=True))
            args.insert(0, f"--model_config_file={CONFIG_TARGET}")
        mounts += self._host_mounts(image)

        rest_port, grpc_port = self.host_ports
        ports = {f"{REST_CONTAINER_PORT}/tcp": ("127.0.0.1", rest_port) if rest_port else ("127.0.0.1",),
                 f"{GRPC_CONTAINER_PORT}/tcp": ("127.0.0.1", grpc_port) if grpc_port else ("127.0.0.1",)}
        try:
            self._container = self._client.containers.run(
                image.id, command=args, name=self.name, detach=True, mounts=mounts, ports=ports,
                environment={"MODEL_NAME": self.spec.model_name, **self.env}, labels=self._labels(),
                mem_limit=self.mem_limit, nano_cpus=self.nano_cpus)
        except docker.errors.APIError as exc:
            self._remove_half_made()
            text = str(exc)
            if "port is already allocated" in text or "address already in use" in text:
                raise PortInUseError(
                    f"{self!r}: host port {self.host_ports} on 127.0.0.1 is already in use: {exc}") from exc
            raise ServingError(f"{self!r}: the Docker engine refused to start the container: {exc}") from exc

    def _get_image(self):
        import docker.errors

        try:
            return self._client.images.get(self.image)
        except docker.errors.ImageNotFound:
            if not self.pull:
                raise ImageMissingError(
                    f"image {self.image!r} is not on the Docker engine: pull it with `docker pull {self.image}`, "
                    "or build the registry-free local image with `python -m servegate.serving.runners.image` "
                    f"and deploy with `servegate deploy --serving docker --docker-image {LOCAL_IMAGE_TAG}`"
                ) from None
        try:
            return self._client.images.pull(self.image)
        except docker.errors.APIError as exc:
            raise ImageMissingError(f"image {self.image!r} is not on the Docker engine and pulling it failed: "
                                    f"{exc}") from exc

    def _host_mounts(self, image) -> list:
        from docker.types import Mount

        raw = (image.labels or {}).get(HOST_MOUNTS_LABEL)
        if not raw:
            return []
        try:
            paths = json.loads(raw)
        except ValueError as exc:
            raise ImageMissingError(f"image {self.image!r}: label {HOST_MOUNTS_LABEL} is not a JSON list of "
                                    f"paths: {raw!r}") from exc
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise ImageMissingError(
                f"image {self.image!r} needs host paths that do not exist here: {missing}; rebuild it with "
                "`python -m servegate.serving.runners.image`")
        return [Mount(target=p, source=p, type="bind", read_only=True) for p in paths]

    def _labels(self) -> dict[str, str]:
        canary = self.spec.labels.get("canary", max(self.spec.versions))
        return {
            MANAGED_LABEL: "true",
            "servegate.model": self.spec.model_name,
            "servegate.version": str(canary),
            "servegate.versions": self.spec.version_list(),
            "servegate.run_id": self.spec.run_id or "",
            "servegate.owner_pid": str(os.getpid()),
            "servegate.owner_ticks": str(_proc.start_ticks(os.getpid()) or ""),
            "servegate.owner_host": _proc.this_host(),
        }

    def _remove_half_made(self) -> None:
        """A container the engine created but could not start still holds its name: remove it."""
        import docker.errors

        try:
            self._client.containers.get(self.name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def _exit_status(self) -> str | None:
        if self._container is None:
            return "was never started"
        self._container.reload()
        state = self._container.attrs.get("State", {})
        if state.get("Status") in ("exited", "dead"):
            if state.get("OOMKilled"):
                return f"was killed for exceeding its memory limit ({self.mem_limit})"
            return f"exited with code {state.get('ExitCode')}"
        return None

    def logs(self, tail: int = 200) -> str:
        if self._container is not None:
            import docker.errors

            try:
                return self._container.logs(tail=tail).decode("utf-8", errors="replace")
            except docker.errors.NotFound:
                pass
        if self._final_log is not None:
            return "".join(self._final_log.splitlines(keepends=True)[-tail:])
        return ""

    def stop(self) -> None:
        import docker.errors

        self._untrack()
        try:
            if self._container is not None:
                self._final_log = self.logs(tail=10_000)
                try:
                    self._container.remove(force=True)
                except docker.errors.NotFound:
                    pass
                self._container = None
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
