"""Protobuf wire format by hand, for the few messages the request log writes on every record.

A record is built on a request thread (the bundled server) or the log's
writer thread (the tap), holding the GIL that every request thread needs, so
every microsecond it spends in Python is taken from a request. Filling
``TensorProto`` and ``PredictRequest`` messages field by field and
serializing them costs several times more than writing their bytes directly.
Protobuf's wire format allows it: a message is the concatenation of its
fields, each a tag (field number and wire type) and, for
a length-delimited field (a string, bytes, an embedded message, a map entry),
a varint length and the payload. A parser reads such bytes as the message
whose fields they are, whatever order the fields come in.

Only what the log writes is encoded here: numeric tensors (``tensor_content``,
little-endian, as ``servegate.serving.server.tensor_codec`` writes them) and
the ``PredictRequest``/``PredictResponse`` that hold them. String tensors, and
the model specs (one per model, version and signature: cached), go through the
protobuf messages. Field numbers are those of tensorflow/core/framework/tensor.proto,
tensor_shape.proto and tensorflow_serving/apis/predict.proto; the tests
parse what this writes with those protos.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Mapping

import numpy as np

from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto, tf_dtype_of

_ONE_BYTE = [bytes((v,)) for v in range(0x80)]
_LITTLE_ENDIAN = sys.byteorder == "little"

# TensorProto: dtype = 1 (enum), tensor_shape = 2, tensor_content = 4. TensorShapeProto: dim = 2; Dim: size = 1.
_TENSOR_DTYPE, _TENSOR_SHAPE, _TENSOR_CONTENT = 1, 2, 4
_SHAPE_DIM, _DIM_SIZE = 2, 1
# PredictRequest: model_spec = 1, inputs = 2 (map). PredictResponse: outputs = 1 (map), model_spec = 2.
# A map entry: key = 1, value = 2.
REQUEST_SPEC, REQUEST_INPUTS = 1, 2
RESPONSE_OUTPUTS, RESPONSE_SPEC = 1, 2


def varint(value: int) -> bytes:
    """A non-negative integer as protobuf's base-128 varint."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: The tags of length-delimited fields 1-15 (one byte each), the only ones written per record.
_TAG = [bytes((number << 3 | 2,)) for number in range(16)]


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    size = len(payload)
    tag = _TAG[number] if number < 16 else varint(number << 3 | 2)
    return tag + (_ONE_BYTE[size] if size < 0x80 else varint(size)) + payload


@lru_cache(maxsize=512)
def _tensor_head(dtype: int, shape: tuple[int, ...]) -> bytes:
    """A TensorProto's dtype and shape: the same for every request of one signature and batch size."""
    # a Dim of size 0 is an empty message: proto3 leaves a zero out
    dims = b"".join(field(_SHAPE_DIM, (varint(_DIM_SIZE << 3) + varint(size)) if size else b"") for size in shape)
    # the shape is written even when empty (a scalar), as tensor_codec and TensorFlow write it
    return varint(_TENSOR_DTYPE << 3) + varint(dtype) + field(_TENSOR_SHAPE, dims)


def tensor(array: np.ndarray) -> bytes:
    """A serialized TensorProto of ``array``, meaning what ``tensor_codec.fill_tensor_proto`` fills in."""
    array = np.asarray(array)
    dtype = tf_dtype_of(array.dtype) if array.dtype.kind not in "OUS" else None
    if dtype is None or not _LITTLE_ENDIAN:
        # strings, byte-swapped arrays, a big-endian host: through the message, rare in logs and correct
        return ndarray_to_tensor_proto(array).SerializeToString()
    content = array.tobytes()  # C order, whatever the array's strides
    head = _tensor_head(dtype, array.shape)
    return head + field(_TENSOR_CONTENT, content) if content else head


@lru_cache(maxsize=512)
def _map_key(name: str) -> bytes:
    return field(1, name.encode("utf-8"))


def tensor_map(number: int, tensors: Mapping[str, np.ndarray]) -> bytes:
    """A ``map<string, TensorProto>`` field: one entry (key = 1, value = 2) per tensor."""
    return b"".join([field(number, _map_key(name) + field(2, tensor(array))) for name, array in tensors.items()])
