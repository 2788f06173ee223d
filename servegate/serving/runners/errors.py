"""The named errors a canary runner raises, all :class:`~servegate.errors.ServingError`.

Each message says what failed, names the thing (engine URL, image, model,
version, port, deadline) and, where the server ran at all, ends with the tail
of its log, because that is where the reason for a failed load is written.
"""

from __future__ import annotations

from servegate.errors import ServingError


class DockerUnavailableError(ServingError):
    """The Docker engine cannot be reached (not running, wrong DOCKER_HOST, no permission)."""


class ImageMissingError(ServingError):
    """The serving image is not present on the Docker engine."""


class ModelLoadError(ServingError):
    """The model server exited, or reported a version as failed, before it became AVAILABLE."""


class DeadlineExceededError(ServingError):
    """The versions did not all become AVAILABLE before the deadline."""


class PortInUseError(ServingError):
    """A port the server needs is taken by another process."""


def with_log_tail(message: str, log_tail: str) -> str:
    """``message`` followed by the server's log tail, indented, or a note that it was empty."""
    tail = log_tail.rstrip()
    if not tail:
        return f"{message}\n--- server log: (empty) ---"
    return f"{message}\n--- server log (last lines) ---\n{tail}"
