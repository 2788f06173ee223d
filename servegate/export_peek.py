"""A model's serving inputs read from its files, without TensorFlow, Keras or an export.

The deploy checks the reference file against these inputs before it exports
(the export imports TensorFlow and loads the model: seconds), so that a typo'd
column, an empty file or a NaN is refused within about a second. Only what
the files state for certain is returned; anything else gives ``None`` and the
reference is checked after the export, as before:

- a SavedModel directory: its ``serving_default`` signature, read from
  ``saved_model.pb`` (:func:`servegate.model_store.savedmodel.read_signatures`);
  the export copies it unchanged;
- a ``.keras`` file saved by Keras 3: the ``InputLayer`` entries of its
  ``config.json`` (name, dtype, batch shape) for a ``Functional`` or
  ``Sequential`` model. Keras's export names each serving input after its
  ``InputLayer``; the outputs' serving names are the export's choice, so they
  are not returned (the checks that need them run after the export);
- ``.h5`` files and subclassed models: ``None``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from servegate.export import ModelSignature, TensorRecord
from servegate.validation.signature import TF_DTYPE_NAMES  # the dtype names export's signatures use

_KERAS_DTYPES = set(TF_DTYPE_NAMES.values())
_KERAS_MODELS = ("Functional", "Sequential")


def peek_inputs(path: str | Path) -> ModelSignature | None:
    """The serving signature's inputs (a SavedModel's outputs too) without exporting, or None when unsure."""
    path = Path(path)
    try:
        if path.is_dir():
            return _savedmodel_inputs(path)
        if path.suffix.lower() == ".keras" and path.is_file():
            return _keras_inputs(path)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None  # the export will name what is wrong with the file
    return None


def _shape(dims: Any) -> tuple[int | None, ...] | None:
    if dims is None:
        return None
    return tuple(None if d is None or int(d) < 0 else int(d) for d in dims)


def _records(tensors: dict) -> tuple[TensorRecord, ...] | None:
    records = []
    for name, spec in sorted(tensors.items()):
        dtype = TF_DTYPE_NAMES.get(spec.dtype)
        if dtype is None:
            return None
        records.append(TensorRecord(name, dtype, _shape(spec.shape)))
    return tuple(records)


def _savedmodel_inputs(path: Path) -> ModelSignature | None:
    from servegate.model_store import StoreError
    from servegate.model_store.savedmodel import DEFAULT_SIGNATURE, read_signatures

    try:
        signature = read_signatures(path).get(DEFAULT_SIGNATURE)
    except StoreError:
        return None
    if signature is None:
        return None
    inputs, outputs = _records(signature.inputs), _records(signature.outputs)
    if not inputs or outputs is None:
        return None
    return ModelSignature(inputs=inputs, outputs=outputs)


def _keras_inputs(path: Path) -> ModelSignature | None:
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read("metadata.json"))
        config = json.loads(archive.read("config.json"))
    if not str(metadata.get("keras_version", "")).startswith("3.") or config.get("class_name") not in _KERAS_MODELS:
        return None
    layers = config["config"]["layers"]
    if config["class_name"] == "Sequential":
        layers = layers[:1]  # a Sequential model's input is its first layer, when that is an InputLayer
    records = []
    for layer in layers:
        if layer.get("class_name") != "InputLayer":
            continue
        settings = layer["config"]
        dtype, shape = settings.get("dtype"), settings.get("batch_shape")
        if dtype not in _KERAS_DTYPES or shape is None or settings.get("sparse") or settings.get("ragged"):
            return None
        records.append(TensorRecord(settings["name"], dtype, _shape(shape)))
    if not records or not _are_the_model_inputs(config, {r.name for r in records}):
        return None
    return ModelSignature(inputs=tuple(sorted(records, key=lambda r: r.name)), outputs=())


def _are_the_model_inputs(config: dict, names: set[str]) -> bool:
    """A Functional model's ``input_layers`` (a list or dict of ``[layer, node, tensor]``) name exactly ``names``."""
    if config["class_name"] == "Sequential":
        return len(names) == 1
    declared = config["config"].get("input_layers")
    if isinstance(declared, dict):
        declared = list(declared.values())
    if isinstance(declared, list) and declared and isinstance(declared[0], str):
        declared = [declared]  # one input: a single [layer, node, tensor]
    if not isinstance(declared, list) or not all(isinstance(d, list) and d and isinstance(d[0], str) for d in declared):
        return False
    return {d[0] for d in declared} == names
