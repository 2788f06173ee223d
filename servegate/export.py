"""Export: a Keras model file or a SavedModel directory -> a SavedModel with a
``serving_default`` signature, its recorded signature, and golden predictions.

Life cycle of one export (``export_model``):

1. the source is checked *before* TensorFlow is imported, so that a missing,
   empty, truncated or wrongly-typed file fails fast with an
   :class:`ExportError` naming the file and what was expected;
2. a ``.keras`` / ``.h5`` file is loaded with Keras (``compile=False``: serving
   never needs the optimizer) and exported with ``model.export(...,
   format="tf_saved_model")``, each output named after its layer as clients read it
   in TF Serving's answers (``export_keras.output_names``; Keras alone calls them
   ``output_0``, ...); modules that register custom objects are imported
   first and Keras's safe mode is on unless the caller opts out (``export_keras.py``
   says how, and turns Keras's errors about them into short named ones); a
   SavedModel directory is loaded to prove it has a ``serving_default`` signature
   and then copied as it is;
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
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from servegate import export_loaded
from servegate.errors import ExportError, naming
from servegate.export_errors import (  # noqa: F401  (re-exported: export.<Error> is the public name)
    CUSTOM_OBJECTS_FLAG,
    UNSAFE_DESERIALIZATION_FLAG,
    CustomObjectsImportError,
    LoadOptionNotApplicableError,
    MissingCustomObjectError,
    MissingServingSignatureError,
    ModelFileEmptyError,
    ModelFileMissingError,
    ModelFileTruncatedError,
    NotAModelError,
    UnsafeDeserializationError,
    UnsupportedModelFormatError,
)
from servegate.export_keras import check_custom_modules, import_tensorflow, load_keras, serving_model

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SERVING_SIGNATURE = "serving_default"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


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


_tf = import_tensorflow


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


def check_load_options(
    source: Path | str, custom_modules: Sequence[str] = (), unsafe_deserialization: bool = False
) -> str:
    """The checks of ``export_model``'s inputs that need no TensorFlow; returns the format.

    The Keras loading options apply to .keras/.h5 files only: a SavedModel is loaded
    from its graph, without Python classes or safe mode, so giving them is refused
    (a configured value is applied or refused, never silently dropped).
    """
    source = Path(source)
    with naming(source):
        return _check_load_options(source, custom_modules, unsafe_deserialization)


def _check_load_options(source: Path, custom_modules: Sequence[str], unsafe_deserialization: bool) -> str:
    fmt = detect_format(source)
    if fmt == "savedmodel" and (custom_modules or unsafe_deserialization):
        flag = CUSTOM_OBJECTS_FLAG if custom_modules else UNSAFE_DESERIALIZATION_FLAG
        raise LoadOptionNotApplicableError(
            f"{flag} applies to .keras and .h5 files only: {source} is a SavedModel directory, which "
            "TensorFlow loads from its graph without Python classes; remove the flag",
            flag=flag,
        )
    check_custom_modules(custom_modules)
    return fmt


def export_model(
    source: Path | str,
    out_dir: Path | str,
    *,
    custom_modules: Sequence[str] = (),
    unsafe_deserialization: bool = False,
) -> ExportResult:
    """Write a SavedModel with a ``serving_default`` signature at ``out_dir``.

    ``custom_modules``: module names or .py paths imported before a Keras file is
    loaded, so that their ``@keras.saving.register_keras_serializable`` classes are
    found. ``unsafe_deserialization``: load with Keras's ``safe_mode=False`` (runs
    code stored in the file, e.g. a Lambda layer's lambda; only for trusted files).
    ``out_dir`` must not exist yet; on any error it still does not exist.
    """
    source = Path(source)
    out_dir = Path(out_dir)
    custom_modules = tuple(custom_modules) if not isinstance(custom_modules, str) else custom_modules
    with naming(source):
        return _export(source, out_dir, custom_modules, unsafe_deserialization)


def _export(source: Path, out_dir: Path, custom_modules: Sequence[str], unsafe_deserialization: bool) -> ExportResult:
    fmt = check_load_options(source, custom_modules, unsafe_deserialization)
    if out_dir.exists():
        raise ExportError(f"export target already exists: {out_dir} (expected a path that does not exist yet)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    extra: dict[str, Any] = {}
    try:
        if fmt == "savedmodel":
            loaded = load_savedmodel(source)
            signature = signature_of(loaded, source)
            shutil.copytree(source, tmp)
        else:
            model = load_keras(
                source, fmt, custom_modules=custom_modules, unsafe_deserialization=unsafe_deserialization
            )
            extra = {"custom_modules": list(custom_modules), "unsafe_deserialization": unsafe_deserialization}
            try:
                serving_model(model).export(str(tmp), format="tf_saved_model", verbose=False)
            except Exception as exc:
                raise ExportError(
                    f"model {source} loaded but could not be exported as a SavedModel: "
                    f"{type(exc).__name__}: {str(exc)[:300]}"
                ) from exc
            loaded = load_savedmodel(tmp)
            signature = signature_of(loaded, source)
        os.replace(tmp, out_dir)
        if fmt != "savedmodel":  # loaded from the export itself (a copied SavedModel was loaded from its source)
            export_loaded.keep(out_dir, loaded)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(savedmodel_dir=out_dir, source=source, source_format=fmt, signature=signature, extra=extra)


#: Rows per call of ``serving_default`` in ``golden_predictions`` unless told otherwise
#: (the deploy pipeline used max(config batch_size, 1024) for the same job).
DEFAULT_GOLDEN_BATCH_SIZE = 1024

InputBatch = Mapping[str, Any]  # input name -> array-like, first axis = rows


def _input_batches(
    path: Path, signature: ModelSignature, inputs: InputBatch | Iterable[InputBatch], batch_size: int
) -> Iterable[dict[str, np.ndarray]]:
    """Each given mapping, checked against the signature and cut into ``batch_size`` rows."""
    expected = set(signature.input_names)
    for given in [inputs] if isinstance(inputs, Mapping) else inputs:
        if set(given) != expected:
            raise ExportError(
                f"golden predictions for {path}: inputs {sorted(given)} do not match the signature's "
                f"inputs {sorted(expected)}"
            )
        arrays = {name: np.asarray(value) for name, value in given.items()}
        rows = {name: len(arr) for name, arr in arrays.items()}
        if len(set(rows.values())) > 1:
            raise ExportError(f"golden predictions for {path}: inputs have different row counts {rows}")
        n_rows = next(iter(rows.values()))
        for start in range(0, n_rows, batch_size):
            yield {name: arr[start : start + batch_size] for name, arr in arrays.items()}


def _empty_output(record: TensorRecord) -> np.ndarray:
    tail = () if record.shape is None else tuple(d or 0 for d in record.shape[1:])
    return np.empty((0,) + tail, dtype=np.dtype(record.dtype) if record.dtype != "string" else object)


def golden_predictions(
    savedmodel_dir: Path | str,
    inputs: InputBatch | Iterable[InputBatch],
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Run ``inputs`` through ``serving_default`` in-process; every output, all rows.

    ``inputs``: one mapping {input name: array whose first axis is the row}, or an
    iterable of such mappings (e.g. ``Reference.batches(n)``), read one at a time so
    that a large reference is never in memory whole. Each mapping is run in slices
    of at most ``batch_size`` rows (default ``DEFAULT_GOLDEN_BATCH_SIZE``).
    Returns {output name: array} for every output of the signature, rows in order.
    Missing or extra inputs, or inputs of different lengths, are an ExportError.
    """
    path = Path(savedmodel_dir)
    batch_size = DEFAULT_GOLDEN_BATCH_SIZE if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ExportError(f"golden predictions for {path}: batch_size {batch_size!r} is not a positive integer")
    loaded = export_loaded.take(path)  # the export this process just wrote is already loaded
    loaded = load_savedmodel(path) if loaded is None else loaded
    signature = signature_of(loaded, path)
    tf = _tf()
    fn = loaded.signatures[SERVING_SIGNATURE]
    dtypes = {t.name: t.dtype for t in signature.inputs}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in signature.output_names}
    for batch in _input_batches(path, signature, inputs, batch_size):
        result = fn(**{name: tf.constant(arr, dtype=dtypes[name]) for name, arr in batch.items()})
        for name in chunks:
            chunks[name].append(result[name].numpy())
    return {
        record.name: np.concatenate(chunks[record.name]) if chunks[record.name] else _empty_output(record)
        for record in signature.outputs
    }
