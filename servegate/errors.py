"""The exception hierarchy shared by every part of servegate.

Every error a user can cause or meet derives from :class:`ServegateError`, so
the command line can turn it into a clear message and exit code 2 without a
traceback. Messages name the thing that is wrong (a file, a field, a model
name) and what was expected; keep them that way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ServegateError(Exception):
    """Base class: an error with a message meant for the user.

    ``subject`` names the thing that is wrong (a path, a config field, a flag, a
    URL); every command's ``--json`` reports it. A class may name a default (the
    flag that always carries its value, e.g. ``--name``).
    """

    #: exit code the CLI uses for this error (2 = error, see DESIGN.md).
    exit_code: int = 2
    #: the subject when the raiser names none
    default_subject: str | None = None

    def __init__(self, *args: object, subject: str | None = None) -> None:
        super().__init__(*args)
        self.subject = subject if subject is not None else self.default_subject


def error_object(exc: BaseException) -> dict[str, str | None]:
    """An error as every command's ``--json`` prints it: its kind, its message and the thing it names.

    ``subject`` is the thing a user changes to fix the error: a path (model, reference file,
    config file, store), a config field (``parity.atol``), a flag (``--name``), a URL or an
    environment variable. Raisers set it; without one, the message's first word is taken when
    the message reads ``"<path or field>: <what is wrong>"`` (a single token: never a phrase).
    """
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    subject = getattr(exc, "subject", None)
    if subject is None and ": " in message:
        head = message.split(": ", 1)[0]
        subject = head if head and not any(c.isspace() for c in head) else None
    return {"kind": type(exc).__name__, "message": message, "subject": None if subject is None else str(subject)}


@contextlib.contextmanager
def naming(subject: object) -> Iterator[None]:
    """Give every :class:`ServegateError` raised in the block that names no subject ``subject``
    (the file a reader reads, the path a check checks), so that no raise site can forget it."""
    try:
        yield
    except ServegateError as exc:
        if getattr(exc, "subject", None) is None:
            exc.subject = str(subject)
        raise


def json_error(exc: BaseException) -> dict:
    """The one object ``--json`` prints for an error, whichever command met it."""
    return {"verdict": "error", "error": error_object(exc)}


class ConfigError(ServegateError):
    """A configuration file or value is missing, malformed or out of range."""


class StoreError(ServegateError):
    """The model store refused or failed an operation."""


class ServingError(ServegateError):
    """A model server could not be started, reached or used."""


class ValidationInputError(ServegateError):
    """Reference data or validation configuration is unusable."""


class ExportError(ServegateError):
    """A model could not be read or exported as a SavedModel."""


class TrackingError(ServegateError):
    """MLflow (or another tracking backend) is unreachable or refused a write."""


class OrchestrationError(ServegateError):
    """Prefect is unreachable or a flow could not be run."""
