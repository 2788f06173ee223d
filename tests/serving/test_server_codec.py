"""TensorProto and JSON codecs: bulk bytes for numbers, ``*_val`` fields, strings and b64."""

from __future__ import annotations

import numpy as np
import pytest

from servegate.serving.server.tensor_codec import (
    CodecError,
    json_to_ndarray,
    ndarray_to_json,
    ndarray_to_tensor_proto,
    tensor_proto_to_ndarray,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_, np.float16])
def test_numeric_round_trip_uses_tensor_content(dtype):
    array = (np.arange(12).reshape(3, 4) % 5).astype(dtype)
    proto = ndarray_to_tensor_proto(array)
    assert proto.tensor_content and not proto.float_val
    back = tensor_proto_to_ndarray(proto)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_make_tensor_proto_forms_decode():
    import tensorflow as tf

    for value, dtype in (([[1.5, 2.5]], tf.float32), ([1, 2, 3], tf.int64), ([b"a", b"bc"], tf.string)):
        proto = tf.make_tensor_proto(value, dtype=dtype)
        np.testing.assert_array_equal(tensor_proto_to_ndarray(proto), tf.make_ndarray(proto))
    # a single value broadcast over the shape, as TensorFlow allows
    proto = tf.make_tensor_proto(7.0, dtype=tf.float32, shape=[2, 2])
    np.testing.assert_array_equal(tensor_proto_to_ndarray(proto), np.full((2, 2), 7.0, np.float32))


def test_string_round_trip():
    array = np.array([[b"a", b"\xff"]], dtype=object)
    np.testing.assert_array_equal(tensor_proto_to_ndarray(ndarray_to_tensor_proto(array)), array)


def test_bad_tensor_content_size_is_an_error():
    proto = ndarray_to_tensor_proto(np.zeros((2, 2), np.float32))
    proto.tensor_shape.dim[0].size = 3
    with pytest.raises(CodecError, match=r"holds 4 values but shape \[3, 2\] needs 6"):
        tensor_proto_to_ndarray(proto)


def test_json_strings_and_b64():
    from tensorflow.core.framework import types_pb2

    array = json_to_ndarray([["a", {"b64": "AP8="}]], types_pb2.DT_STRING)
    assert array.shape == (1, 2) and array.tolist() == [[b"a", b"\x00\xff"]]
    with pytest.raises(CodecError, match="invalid base64"):
        json_to_ndarray([{"b64": "***"}], types_pb2.DT_STRING)
    with pytest.raises(CodecError, match="not a rectangular"):
        json_to_ndarray([["a"], ["b", "c"]], types_pb2.DT_STRING)


def test_json_output_forms():
    assert ndarray_to_json(np.array([0.1, 3.5], np.float32), "y") == [0.1, 3.5]
    assert ndarray_to_json(np.array([b"hi"], dtype=object), "text") == ["hi"]
    assert ndarray_to_json(np.array([b"hi"], dtype=object), "raw_bytes") == [{"b64": "aGk="}]
    assert ndarray_to_json(np.array([[1, 2]], np.int64), "n") == [[1, 2]]
