"""The exception hierarchy shared by every part of servegate.

Every error a user can cause or meet derives from :class:`ServegateError`, so
the command line can turn it into a clear message and exit code 2 without a
traceback. Messages name the thing that is wrong (a file, a field, a model
name) and what was expected; keep them that way.
"""

from __future__ import annotations


class ServegateError(Exception):
    """Base class: an error with a message meant for the user."""

    #: exit code the CLI uses for this error (2 = error, see DESIGN.md).
    exit_code: int = 2


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
