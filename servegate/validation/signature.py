"""A served signature as plain data, read from whatever describes it.

Validation needs the signature twice: before the canary starts (to check the
reference file's columns and dtypes) and from the canary itself (the contract
check). The descriptions come in several shapes, all normalised here into one
:class:`Signature`:

- TensorFlow Serving's REST ``/metadata`` answer (``signature_def`` with
  ``DT_FLOAT`` dtypes and ``tensor_shape.dim[].size`` strings);
- the gRPC ``GetModelMetadataResponse`` (decoded by the serving client into the
  same JSON form);
- ``servegate.export.ModelSignature`` objects and their ``to_dict()`` form
  (lists of ``{"name", "dtype", "shape"}``, dtype names like ``float32``);
- a plain ``{"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}`` mapping.

Dtypes are numpy-style names (``float32``); a dimension of unknown size is
``None`` and a tensor of unknown rank has ``shape=None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servegate.errors import ValidationInputError

# TensorFlow's DataType enum names (types.proto) -> numpy-style names.
TF_DTYPE_NAMES = {
    "DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16", "DT_BFLOAT16": "bfloat16",
    "DT_INT8": "int8", "DT_INT16": "int16", "DT_INT32": "int32", "DT_INT64": "int64",
    "DT_UINT8": "uint8", "DT_UINT16": "uint16", "DT_UINT32": "uint32", "DT_UINT64": "uint64",
    "DT_BOOL": "bool", "DT_STRING": "string",
}
_KNOWN = set(TF_DTYPE_NAMES.values())


class SignatureFormatError(ValidationInputError):
    """A signature description has a shape this module cannot read."""


def normalise_dtype(dtype: Any) -> str:
    """``DT_FLOAT`` / ``float32`` / ``tf.float32`` / numpy dtype -> ``float32``."""
    name = getattr(dtype, "name", dtype)
    name = str(name)
    if name in TF_DTYPE_NAMES:
        return TF_DTYPE_NAMES[name]
    if name in _KNOWN:
        return name
    if name in ("object", "str", "bytes"):
        return "string"
    raise SignatureFormatError(f"unknown tensor dtype {dtype!r}; expected a TensorFlow or numpy dtype name")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: numpy-style dtype name and shape (``None`` = unknown)."""

    dtype: str
    shape: tuple[int | None, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": None if self.shape is None else list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of one signature (``serving_default`` by default)."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec] = field(default_factory=dict)
    name: str = "serving_default"

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature_name": self.name,
            "inputs": {k: v.to_dict() for k, v in sorted(self.inputs.items())},
            "outputs": {k: v.to_dict() for k, v in sorted(self.outputs.items())},
        }


def _shape_from(value: Any) -> tuple[int | None, ...] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):  # TF Serving's TensorShapeProto in JSON
        if value.get("unknown_rank") or value.get("unknownRank"):
            return None
        dims = value.get("dim", [])
        return tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims)
    return tuple(None if d is None or int(d) < 0 else int(d) for d in value)


def _tensors(value: Any, where: str) -> dict[str, TensorSpec]:
    out: dict[str, TensorSpec] = {}
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = []
        for entry in value:
            name = entry["name"] if isinstance(entry, Mapping) else getattr(entry, "name")
            items.append((name, entry))
    else:
        raise SignatureFormatError(f"signature {where}: expected a mapping or list of tensors, got {type(value).__name__}")
    for name, spec in items:
        if isinstance(spec, Mapping):
            dtype = spec.get("dtype")
            shape = spec.get("tensor_shape", spec.get("tensorShape", spec.get("shape")))
        else:  # servegate.export.TensorRecord or anything with dtype/shape attributes
            dtype, shape = getattr(spec, "dtype", None), getattr(spec, "shape", None)
        if dtype is None:
            raise SignatureFormatError(f"signature {where}[{name!r}]: no dtype")
        out[str(name)] = TensorSpec(normalise_dtype(dtype), _shape_from(shape))
    return out


def parse_signature(source: Any, signature_name: str = "serving_default") -> Signature:
    """Turn any supported signature description into a :class:`Signature`.

    Raises :class:`SignatureFormatError` naming what is missing.
    """
    if isinstance(source, Signature):
        return source
    if not isinstance(source, Mapping):
        if hasattr(source, "inputs") and hasattr(source, "outputs"):  # export.ModelSignature
            return Signature(_tensors(list(source.inputs), "inputs"), _tensors(list(source.outputs), "outputs"),
                             getattr(source, "signature_name", signature_name))
        raise SignatureFormatError(f"cannot read a signature from {type(source).__name__}")
    data: Mapping[str, Any] = source
    # REST /metadata: {"model_spec":..., "metadata": {"signature_def": {"signature_def": {name: {...}}}}}
    if "metadata" in data:
        data = data["metadata"]
    if "signature_def" in data:
        data = data["signature_def"]
        if "signature_def" in data:
            data = data["signature_def"]
        if signature_name not in data:
            found = ", ".join(sorted(data)) or "none"
            raise SignatureFormatError(f"model metadata has no signature {signature_name!r} (found: {found})")
        data = data[signature_name]
    if "inputs" not in data:
        raise SignatureFormatError(f"signature description has no 'inputs' (keys: {sorted(data)})")
    return Signature(_tensors(data["inputs"], "inputs"), _tensors(data.get("outputs", {}), "outputs"),
                     str(data.get("signature_name", signature_name)))
