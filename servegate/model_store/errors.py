"""The model store's errors: each a :class:`servegate.errors.StoreError`.

Every message names the thing that is wrong (model name, version, path) and
what was expected, because the command line prints it as is.
"""

from __future__ import annotations

from servegate.errors import StoreError

__all__ = [
    "StoreError",
    "InvalidModelName",
    "InvalidVersion",
    "NotASavedModel",
    "UnknownModel",
    "UnknownVersion",
    "NotNewerThanProduction",
    "NothingToRollBackTo",
    "VersionConflict",
    "LockTimeout",
    "StoreNotWritable",
    "NotEnoughSpace",
    "StoreIOError",
]


class InvalidModelName(StoreError):
    """A model name that could address a path outside the store, or is otherwise not allowed."""

    default_subject = "--name"  # every command takes the model name as --name


class InvalidVersion(StoreError):
    """A version that is not a positive integer."""


class NotASavedModel(StoreError):
    """A source directory that is missing, empty, or not a complete SavedModel."""


class UnknownModel(StoreError):
    """The store holds nothing for this model name."""

    default_subject = "--name"


class UnknownVersion(StoreError):
    """The version is not where the operation needs it (e.g. promote of a version that is not staged)."""


class NotNewerThanProduction(StoreError):
    """Promoting a version that is not newer than the one production serves (TF Serving would ignore it)."""


class NothingToRollBackTo(StoreError):
    """Rollback refused: production holds no older version to go back to."""

    default_subject = "--name"


class VersionConflict(StoreError):
    """A version directory is already where the store wanted to put one (made outside servegate)."""


class LockTimeout(StoreError):
    """Another process held the model's lock for longer than the timeout.

    ``holder`` is what the holder wrote about itself (pid, host, since,
    operation, run_id), or ``None`` when it wrote nothing.
    """

    def __init__(self, message: str, *, holder: dict | None = None, waited: float = 0.0,
                 subject: str | None = None):
        super().__init__(message, subject=subject)
        self.holder = holder
        self.waited = waited


class StoreNotWritable(StoreError):
    """The store root (or an area directory) cannot be written."""


class NotEnoughSpace(StoreError):
    """The filesystem has less free space than the copy needs."""


class StoreIOError(StoreError):
    """An operating-system error in the middle of a store operation (disk full, I/O error, ...)."""
