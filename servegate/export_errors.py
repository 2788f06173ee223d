"""The named errors of export (all :class:`~servegate.errors.ExportError`).

They live apart from ``export.py`` so that the Keras-loading module
(``export_keras.py``) and ``export.py`` can both raise them without importing
each other; ``servegate.export`` re-exports every one of them.
"""

from __future__ import annotations

from servegate.errors import ExportError

#: The ``servegate deploy`` flags named in the messages below (the CLI defines them
#: with exactly these names; keep both in step).
CUSTOM_OBJECTS_FLAG = "--custom-objects"
UNSAFE_DESERIALIZATION_FLAG = "--unsafe-deserialization"


class ModelFileMissingError(ExportError):
    """The model path does not exist."""


class ModelFileEmptyError(ExportError):
    """The model file has no bytes, or the directory has no entries."""


class ModelFileTruncatedError(ExportError):
    """The model file starts like a model but ends before it is complete."""


class NotAModelError(ExportError):
    """The path exists but holds something that is not a model of the expected kind."""


class UnsupportedModelFormatError(ExportError):
    """The file's extension is not one export knows (.keras, .h5, SavedModel dir)."""


class MissingServingSignatureError(ExportError):
    """A SavedModel has no ``serving_default`` signature."""


class CustomObjectsImportError(ExportError):
    """A module given to register custom objects (``--custom-objects``) cannot be imported."""

    def __init__(self, message: str, *, module: str) -> None:
        super().__init__(message)
        self.module = module
        self.subject = module  # what `--json` reports as the thing the error names


class MissingCustomObjectError(ExportError):
    """The model file names a class or function that no imported module registered."""

    def __init__(self, message: str, *, path: str, name: str, registered_name: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.registered_name = registered_name
        self.subject = path


class UnsafeDeserializationError(ExportError):
    """Keras's safe mode refused to load part of the model (a Python lambda, say)."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.subject = path


class LoadOptionNotApplicableError(ExportError):
    """A Keras loading option was given for a model that is not a Keras file."""

    def __init__(self, message: str, *, flag: str) -> None:
        super().__init__(message)
        self.subject = flag
