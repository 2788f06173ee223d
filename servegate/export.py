"""Export: a Keras model file or a SavedModel directory -> a SavedModel with a
``serving_default`` signature, its recorded signature, and golden predictions.

Life cycle of one export (``export_model``):

1. the source is checked *before* TensorFlow is imported, so that a missing,
   empty, truncated or wrongly-typed file fails fast with an
   :class:`ExportError` naming the file and what was expected;
2. a ``.keras`` / ``.h5`` file is loaded with Keras (``compile=False``: serving
   never needs the optimizer) and exported with ``model.export(...,
   format="tf_saved_model")``; a SavedModel directory is loaded to prove it
   has a ``serving_default`` signature and then copied as it is;
3. the output is written into a dot-named temp dir beside ``out_dir`` and
   renamed into place, so ``out_dir`` is either absent or complete;
4. the ``serving_default`` signature is recorded as a :class:`ModelSignature`
   (input/output names, dtypes, shapes with ``None`` for unknown dimensions).

``golden_predictions`` loads the exported SavedModel in-process and runs the
reference inputs through ``serving_default`` in batches: those are the
predictions the canary must reproduce (the parity check catches serving skew).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from servegate.errors import ExportError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SERVING_SIGNATURE = "serving_default"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


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


@dataclass(frozen=True)
class TensorRecord:
    """One input or output of a signature: name, dtype name, shape (None = any)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None  # None: unknown rank

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": None if self.shape is None else list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorRecord":
        shape = data.get("shape")
        return cls(str(data["name"]), str(data["dtype"]), None if shape is None else tuple(shape))


@dataclass(frozen=True)
class ModelSignature:
    """The ``serving_default`` signature of a SavedModel, as plain data."""

    inputs: tuple[TensorRecord, ...]
    outputs: tuple[TensorRecord, ...]
    signature_name: str = SERVING_SIGNATURE

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature_name": self.signature_name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSignature":
        return cls(
            inputs=tuple(TensorRecord.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorRecord.from_dict(t) for t in data["outputs"]),
            signature_name=str(data.get("signature_name", SERVING_SIGNATURE)),
        )


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` produced: where, from what, and the signature."""

    savedmodel_dir: Path
    source: Path
    source_format: str  # "keras" | "h5" | "savedmodel"
    signature: ModelSignature
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["savedmodel_dir"] = str(self.savedmodel_dir)
        data["source"] = str(self.source)
        data["signature"] = self.signature.to_dict()
        return data


# --------------------------------------------------------------------------
# checks that run before TensorFlow is imported


def detect_format(path: Path) -> str:
    """Classify ``path`` as "keras", "h5" or "savedmodel", or raise an ExportError.

    Only bytes on disk are read here; nothing is imported. Each error names the
    path and says what was expected.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileMissingError(
            f"model not found: {path} (expected a .keras or .h5 file, or a SavedModel directory)"
        )
    if path.is_dir():
        entries = list(path.iterdir())
        if not entries:
            raise ModelFileEmptyError(f"model directory is empty: {path} (expected a SavedModel with saved_model.pb)")
        pb = path / "saved_model.pb"
        if not pb.is_file():
            names = ", ".join(sorted(e.name for e in entries)[:8])
            raise NotAModelError(
                f"not a SavedModel directory: {path} has no saved_model.pb (found: {names})"
            )
        if pb.stat().st_size == 0:
            raise ModelFileEmptyError(f"SavedModel file is empty: {pb}")
        return "savedmodel"
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES:
        raise UnsupportedModelFormatError(
            f"unsupported model format: {path} (suffix {suffix or 'none'!r}; "
            "expected a .keras or .h5 file, or a SavedModel directory)"
        )
    size = path.stat().st_size
    if size == 0:
        raise ModelFileEmptyError(f"model file is empty (0 bytes): {path}")
    with path.open("rb") as fh:
        head = fh.read(8)
    if suffix == ".keras":
        if not head.startswith(_ZIP_MAGIC):
            raise NotAModelError(f"not a Keras model: {path} is not a .keras zip archive")
        # A zip's directory sits at its end: a cut-off file starts right but has none.
        if not zipfile.is_zipfile(path):
            raise ModelFileTruncatedError(
                f"truncated model file: {path} ({size} bytes) starts like a .keras archive but its end is missing"
            )
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "config.json" not in names:
                raise NotAModelError(f"not a Keras model: {path} is a zip archive without config.json")
            bad = zf.testzip()
            if bad is not None:
                raise ModelFileTruncatedError(f"corrupt model file: {path} (member {bad} fails its checksum)")
        return "keras"
    if not head.startswith(_HDF5_MAGIC):
        raise NotAModelError(f"not a Keras model: {path} is not an HDF5 file")
    return "h5"


# --------------------------------------------------------------------------
# TensorFlow part


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _shape(tensor_shape) -> tuple[int | None, ...] | None:
    if tensor_shape.rank is None:
        return None
    return tuple(None if d is None else int(d) for d in tensor_shape.as_list())


def signature_of(loaded, path: Path) -> ModelSignature:
    """The ``serving_default`` signature of a loaded SavedModel as plain data."""
    signatures = getattr(loaded, "signatures", {}) or {}
    if SERVING_SIGNATURE not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise MissingServingSignatureError(
            f"SavedModel {path} has no {SERVING_SIGNATURE!r} signature (found: {found}); "
            "export it with a serving_default signature"
        )
    fn = signatures[SERVING_SIGNATURE]
    _, kwargs = fn.structured_input_signature
    outputs = fn.structured_outputs
    if not isinstance(outputs, Mapping):
        raise MissingServingSignatureError(
            f"SavedModel {path}: {SERVING_SIGNATURE!r} has unnamed outputs; expected a dict of named tensors"
        )
    return ModelSignature(
        inputs=tuple(TensorRecord(name, spec.dtype.name, _shape(spec.shape)) for name, spec in sorted(kwargs.items())),
        outputs=tuple(TensorRecord(name, spec.dtype.name, _shape(spec.shape)) for name, spec in sorted(outputs.items())),
    )


def load_savedmodel(path: Path):
    """Load a SavedModel, turning TensorFlow's errors into an ExportError naming ``path``."""
    tf = _tf()
    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:  # tf raises OSError, DecodeError, NotFoundError, ValueError...
        raise NotAModelError(f"SavedModel {path} cannot be loaded: {type(exc).__name__}: {str(exc)[:300]}") from exc


def read_signature(savedmodel_dir: Path) -> ModelSignature:
    """Load ``savedmodel_dir`` and return its ``serving_default`` signature."""
    path = Path(savedmodel_dir)
    detect_format(path)
    return signature_of(load_savedmodel(path), path)


def _load_keras(path: Path, fmt: str):
    _tf()
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise ModelFileTruncatedError(f"truncated model file: {path}: {exc}") from exc
        raise NotAModelError(f"model file {path} cannot be read as a {fmt} model: {exc}") from exc
    except Exception as exc:
        raise NotAModelError(
            f"model file {path} cannot be loaded as a Keras model: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc


def export_model(source: Path | str, out_dir: Path | str) -> ExportResult:
    """Write a SavedModel with a ``serving_default`` signature at ``out_dir``.

    ``out_dir`` must not exist yet; on any error it still does not exist.
    """
    source = Path(source)
    out_dir = Path(out_dir)
    fmt = detect_format(source)
    if out_dir.exists():
        raise ExportError(f"export target already exists: {out_dir} (expected a path that does not exist yet)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if fmt == "savedmodel":
            loaded = load_savedmodel(source)
            signature = signature_of(loaded, source)
            shutil.copytree(source, tmp)
        else:
            model = _load_keras(source, fmt)
            try:
                model.export(str(tmp), format="tf_saved_model", verbose=False)
            except Exception as exc:
                raise ExportError(
                    f"model {source} loaded but could not be exported as a SavedModel: "
                    f"{type(exc).__name__}: {str(exc)[:300]}"
                ) from exc
            signature = signature_of(load_savedmodel(tmp), source)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(savedmodel_dir=out_dir, source=source, source_format=fmt, signature=signature)


def golden_predictions(
    savedmodel_dir: Path | str,
    inputs: Mapping[str, np.ndarray],
    batch_size: int = 4096,
) -> dict[str, np.ndarray]:
    """Run ``inputs`` through ``serving_default`` in-process; one array per output.

    ``inputs`` maps each signature input name to an array whose first axis is
    the row. Missing or extra inputs are an ExportError naming them.
    """
    path = Path(savedmodel_dir)
    loaded = load_savedmodel(path)
    signature = signature_of(loaded, path)
    expected = set(signature.input_names)
    given = set(inputs)
    if expected != given:
        raise ExportError(
            f"golden predictions for {path}: inputs {sorted(given)} do not match the signature's "
            f"inputs {sorted(expected)}"
        )
    tf = _tf()
    fn = loaded.signatures[SERVING_SIGNATURE]
    dtypes = {t.name: t.dtype for t in signature.inputs}
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    n_rows = len(next(iter(arrays.values())))
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in signature.output_names}
    for start in range(0, n_rows, batch_size):
        batch = {
            name: tf.constant(arr[start : start + batch_size], dtype=dtypes[name]) for name, arr in arrays.items()
        }
        result = fn(**batch)
        for name in chunks:
            chunks[name].append(result[name].numpy())
    return {name: np.concatenate(parts) if parts else np.empty((0,)) for name, parts in chunks.items()}
