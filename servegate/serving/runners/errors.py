"""The named errors a canary runner raises, all :class:`~servegate.errors.ServingError`.

Each message says what failed, names the thing (engine URL, image, model,
version, port, deadline) and, where the server ran at all, ends with the tail
of its log, because that is where the reason for a failed load is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from servegate.errors import ServingError


class DockerUnavailableError(ServingError):
    """The Docker engine cannot be reached (not running, wrong DOCKER_HOST, no permission)."""


class ImageMissingError(ServingError):
    """The serving image is not present on the Docker engine."""


class ModelLoadError(ServingError):
    """The model server exited, or reported a version as failed, before it became AVAILABLE.

    ``server_log``: the server's whole log as it stood (set by the runner that saw the failure).
    """

    server_log: str = ""


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


# TensorFlow Serving: "Loading servable: {name: m version: 3} failed: NOT_FOUND: ..."; the bundled
# server: "Loading servable {name: m version: 3} failed (attempt 1 of 1): ..." and, when it gives up
# at start-up, "Failed to start server. Error: Loading servable {name: m version: 3} failed: ...".
_LOAD_FAILED = re.compile(r"Loading servable:? \{name: (?P<name>\S+) version: (?P<version>\d+)\} failed"
                          r"(?: \(attempt \d+ of \d+\))?: (?P<cause>.*)")
#: The most of a server's cause line that goes into a reason (the whole log is kept as an artifact).
CAUSE_MAX_CHARS = 400


@dataclass(frozen=True)
class LoadFailure:
    """What a model server's log says about a version it could not load."""

    version: int
    cause: str  # the first line of the loader's error


def load_failure(server_log: str, model_name: str) -> LoadFailure | None:
    """The first version of ``model_name`` the log says failed to load, with its one-line cause; None if none."""
    for line in server_log.splitlines():
        found = _LOAD_FAILED.search(line)
        if found and found["name"] == model_name:
            cause = found["cause"].strip()
            if len(cause) > CAUSE_MAX_CHARS:
                cause = cause[:CAUSE_MAX_CHARS - 3].rstrip() + "..."
            return LoadFailure(int(found["version"]), cause)
    return None
