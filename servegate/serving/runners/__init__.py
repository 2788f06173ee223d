"""Canary runners: one small interface (base.py) over a local process and a Docker container.

    from servegate.serving.runners import CanarySpec, make_runner, reap
    spec = CanarySpec("iris", {7: staged_dir, 6: production_dir}, labels={"canary": 7, "stable": 6})
    with make_runner("process", spec) as runner:   # or "docker", image=...
        runner.wait_until_available(60)
        ... runner.rest_url, runner.grpc_target ...

Docker-only pieces (docker-py) are imported lazily, so the process runner and
the CLI's light commands do not pay for them.
"""

from __future__ import annotations

from servegate.errors import ServingError
from servegate.serving import RUNNER_KINDS
from servegate.serving.runners.base import CanarySpec, CanarySpecError, ModelServerRunner, model_config_text
from servegate.serving.runners.errors import (DeadlineExceededError, DockerUnavailableError, ImageMissingError,
                                              ModelLoadError, PortInUseError)
from servegate.serving.runners.process import ProcessRunner
from servegate.serving.runners.reap import ReapReport, reap


def make_runner(kind: str, spec: CanarySpec, **options) -> ModelServerRunner:
    """A runner of ``kind`` ("process" or "docker") for ``spec``; ``options`` go to its constructor."""
    if kind == "process":
        return ProcessRunner(spec, **options)
    if kind == "docker":
        from servegate.serving.runners.docker import DockerRunner

        return DockerRunner(spec, **options)
    raise ServingError(f"canary runner kind {kind!r} is unknown: expected one of {', '.join(RUNNER_KINDS)}")


def __getattr__(name: str):
    # DockerRunner and ensure_local_image on demand, keeping `import docker` off the light paths.
    if name == "DockerRunner":
        from servegate.serving.runners.docker import DockerRunner

        return DockerRunner
    if name == "ensure_local_image":
        from servegate.serving.runners.image import ensure_local_image

        return ensure_local_image
    raise AttributeError(name)


__all__ = ["CanarySpec", "CanarySpecError", "ModelServerRunner", "ProcessRunner", "DockerRunner", "make_runner",
           "reap", "ReapReport", "ensure_local_image", "model_config_text", "DeadlineExceededError",
           "DockerUnavailableError", "ImageMissingError", "ModelLoadError", "PortInUseError"]
