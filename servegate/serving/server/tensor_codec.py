"""Tensors in and out: JSON values <-> numpy arrays <-> ``TensorProto``.

The gRPC path is the bulk path (large validations), so TensorProtos are
decoded with ``np.frombuffer`` over ``tensor_content`` and encoded with
``ndarray.tobytes()``: never per-element Python lists. Per-element ``*_val``
fields are still read, because clients such as ``tf.make_tensor_proto`` of a
scalar or of strings use them.

JSON follows TensorFlow Serving's REST API: nested lists, ``{"b64": "..."}`` for
DT_STRING values, strings in outputs whose name ends in ``_bytes`` returned as
``{"b64": ...}``, float32 values printed with their shortest round-trip digits
(``3.5``, ``0.1``) as TensorFlow Serving does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2


class CodecError(ValueError):
    """A value cannot be turned into a tensor of the expected type (the message says why)."""


# DataType enum -> numpy dtype. DT_STRING maps to object arrays of bytes.
_NUMPY_OF: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
    types_pb2.DT_STRING: np.dtype(object),
}
_DTYPE_OF: dict[np.dtype, int] = {v: k for k, v in _NUMPY_OF.items()}

# Which repeated field carries per-element values for each dtype.
_VAL_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)


def tf_dtype_of(dtype: np.dtype) -> int | None:
    """The DataType of a numpy dtype, None when it has none (byte-swapped and unusual dtypes included)."""
    return _DTYPE_OF.get(dtype)


def numpy_dtype(dtype: int) -> np.dtype:
    try:
        return _NUMPY_OF[dtype]
    except KeyError:
        raise CodecError(f"data type {dtype_name(dtype)} is not supported by the bundled server") from None


# ---------------------------------------------------------------- TensorProto


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a TensorProto (``tensor_content`` or ``*_val`` fields, a single value broadcast)."""
    np_dtype = numpy_dtype(proto.dtype)
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(s < 0 for s in shape):
        raise CodecError(f"tensor shape {list(shape)} has a negative dimension")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if proto.dtype != types_pb2.DT_STRING and proto.tensor_content:
        try:
            flat = np.frombuffer(proto.tensor_content, dtype=np_dtype)
        except ValueError as exc:
            raise CodecError(f"tensor_content does not hold {dtype_name(proto.dtype)} values: {exc}") from None
        if flat.size != count:
            raise CodecError(f"tensor_content holds {flat.size} values but shape {list(shape)} needs {count}")
        return flat.reshape(shape)
    values = getattr(proto, _VAL_FIELD[proto.dtype])
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif proto.dtype == types_pb2.DT_HALF:
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(values, dtype=np_dtype)
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 1 or (flat.size == 0 and count == 0):
        return np.broadcast_to(flat, shape).copy() if count else flat.reshape(shape)
    if flat.size == 0:
        # TensorFlow fills a tensor without values with zeros.
        return np.zeros(shape, dtype=np_dtype) if proto.dtype != types_pb2.DT_STRING else np.full(shape, b"", object)
    raise CodecError(f"tensor has {flat.size} values but shape {list(shape)} needs {count}")


def ndarray_to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode an array: numeric ones as one ``tensor_content`` blob, strings as ``string_val``."""
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    return proto


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    """Encode ``array`` into an empty ``proto`` in place (a map entry of a request, say: no copy)."""
    array = np.asarray(array)
    if array.dtype.kind in ("U", "S"):
        array = array.astype(object)
    try:
        dtype = _DTYPE_OF[array.dtype]
    except KeyError:
        raise CodecError(f"numpy dtype {array.dtype} has no TensorFlow counterpart here") from None
    proto.dtype = dtype
    proto.tensor_shape.SetInParent()  # a scalar's shape is present and empty, as TensorFlow writes it
    for size in array.shape:
        proto.tensor_shape.dim.add(size=int(size))
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(_as_bytes(v) for v in array.reshape(-1))
    else:
        # tensor_content is little-endian raw data, like TensorFlow's own encoding.
        proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


# ----------------------------------------------------------------------- JSON


def _decode_strings(value: Any) -> Any:
    """Nested JSON for a DT_STRING tensor -> the same nesting with bytes leaves."""
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise CodecError('a string value must be a JSON string or {"b64": "<base64>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CodecError(f"invalid base64 in {{\"b64\": ...}}: {exc}") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise CodecError(f"expected a string for a DT_STRING input, got {type(value).__name__} {value!r}")


def json_to_ndarray(value: Any, dtype: int) -> np.ndarray:
    """A JSON value (scalar or nested lists) -> an array of ``dtype``; ragged lists are an error."""
    np_dtype = numpy_dtype(dtype)
    if dtype == types_pb2.DT_STRING:
        nested = _decode_strings(value)
        try:
            array = np.array(nested, dtype=object)
        except ValueError as exc:
            raise CodecError(f"string values are not a rectangular nested list: {exc}") from None
        if any(isinstance(v, list) for v in array.reshape(-1)):
            raise CodecError("string values are not a rectangular nested list")
        return array
    if _has_dict(value):
        raise CodecError(f"expected numbers for a {dtype_name(dtype)} input, got a JSON object")
    try:
        return np.asarray(value, dtype=np_dtype)
    except (ValueError, TypeError) as exc:
        raise CodecError(f"cannot read the value as a {dtype_name(dtype)} tensor: {exc}") from None


def _has_dict(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    if isinstance(value, list) and value:
        return _has_dict(value[0])
    return False


def ndarray_to_json(array: np.ndarray, output_name: str) -> Any:
    """An output array -> JSON-ready Python values, the way TensorFlow Serving prints it."""
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        as_b64 = output_name.endswith("_bytes")
        return _strings_to_json(array.tolist(), as_b64)
    if array.dtype in (np.float32, np.float16):
        # Shortest digits that round-trip the float32 value ("0.1", not 0.10000000149011612).
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def _strings_to_json(value: Any, as_b64: bool) -> Any:
    if isinstance(value, list):
        return [_strings_to_json(v, as_b64) for v in value]
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if as_b64:
        return {"b64": base64.b64encode(raw).decode("ascii")}
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(raw).decode("ascii")}
