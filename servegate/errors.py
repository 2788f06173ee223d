"""The exception hierarchy shared by every part of servegate.

Every error a user can cause or meet derives from :class:`ServegateError`, so
the command line can turn it into a clear message and exit code 2 without a
traceback. Messages name the thing that is wrong (a file, a field, a model
name) and what was expected; keep them that way.
"""

from __future__ import annotations


class ServegateError(Exception):
    """Base class: an error with a message meant for the user.

    ``subject`` names the thing that is wrong (a file, a field, a flag) when the
    raiser knows it; ``servegate deploy --json`` reports it.
    """

    #: exit code the CLI uses for this error (2 = error, see DESIGN.md).
    exit_code: int = 2

    def __init__(self, *args: object, subject: str | None = None) -> None:
        super().__init__(*args)
        self.subject = subject


def error_object(exc: BaseException) -> dict[str, str | None]:
    """An error as ``--json`` prints it: its kind, its message and the thing it names.

    Without an explicit ``subject``, the thing is what the message names before
    its first ``": "`` (messages read "<thing>: <what is wrong>").
    """
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    subject = getattr(exc, "subject", None)
    if subject is None and ": " in message:
        subject = message.split(": ", 1)[0]
    return {"kind": type(exc).__name__, "message": message, "subject": subject}


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
