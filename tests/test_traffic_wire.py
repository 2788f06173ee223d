"""A REST ``:predict``'s log record, written on protobuf's wire by hand (``servegate.traffic.wire``), holds the
same PredictionLog as one built field by field with the protos, and TensorFlow reads it back."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow_serving.apis import prediction_log_pb2

from servegate.serving.server.tensor_codec import fill_tensor_proto
from servegate.traffic import prediction_log as plog
from servegate.traffic import wire
from servegate.traffic.recorder import Recorder, log_files

SERVED = plog.Served("m", 7, "serving_default", plog.ORIGIN_ROWS, 1.0, 1_700_000_000)

#: (inputs, outputs): every dtype the server answers with, scalars, empty and zero-sized dimensions, a
#: non-contiguous view, a payload of more than 127 bytes (a two-byte length), strings (through the message).
TENSORS = [
    ({"x": np.arange(8, dtype=np.float32).reshape(1, 8)}, {"y": np.ones((1, 1), np.float32)}),
    ({"x": np.float64(2.5), "s": np.array([b"a", "bé".encode()], dtype=object)},
     {"y": np.zeros((0, 3), np.int64), "b": np.array([True, False])}),
    ({"x": np.arange(3000, dtype=np.int32).reshape(30, 100)[:, ::3]}, {"y": np.array(["ab", "c"])}),
    ({"h": np.ones((2, 2), np.float16), "u": np.arange(4, dtype=np.uint64).reshape(2, 2).T,
      "i8": np.array([-1, 2], np.int8), "u16": np.array([[7]], np.uint16), "u32": np.array([1 << 31], np.uint32),
      "i16": np.array([-300], np.int16), "u8": np.array([255], np.uint8), "i64": np.array([-(1 << 40)], np.int64)},
     {"sortie_é": np.array([], np.float64)}),
]
ADDRESSED = [plog.Addressed(), plog.Addressed(version=3), plog.Addressed(label="stable", signature_name="sig")]


def _built_the_plain_way(served: plog.Served, addressed: plog.Addressed, inputs, outputs):
    record = prediction_log_pb2.PredictionLog(log_metadata=plog.metadata(served))
    request = record.predict_log.request
    plog._request_spec(request.model_spec, served.model_name, addressed)
    for name, array in inputs.items():
        fill_tensor_proto(request.inputs[name], np.asarray(array))
    response = record.predict_log.response
    plog._response_spec(response.model_spec, served)
    for name, array in outputs.items():
        fill_tensor_proto(response.outputs[name], np.asarray(array))
    return record


@pytest.mark.parametrize("addressed", ADDRESSED, ids=["latest", "version", "label"])
@pytest.mark.parametrize("tensors", TENSORS, ids=["one-row", "scalars-strings-empty", "view-big", "dtypes"])
def test_a_rest_predict_record_parses_to_the_message_built_the_plain_way(tensors, addressed):
    inputs, outputs = tensors
    written = plog.parse(plog.rest_predict_log(SERVED, addressed, inputs, outputs))
    assert written == _built_the_plain_way(SERVED, addressed, inputs, outputs)


def test_the_comparison_catches_a_record_written_wrong():
    """The check above can fail: the same tensors under the response's field number, or one value changed."""
    inputs, outputs = TENSORS[0]
    expected = _built_the_plain_way(SERVED, plog.Addressed(), inputs, outputs)
    request = plog._request_spec_field("m", None, None, "")
    response = plog._response_spec_field("m", 7, "serving_default")
    swapped = plog.framed_log(SERVED, "predict_log", request + wire.tensor_map(wire.RESPONSE_OUTPUTS, inputs),
                              response + wire.tensor_map(wire.RESPONSE_OUTPUTS, outputs))
    assert plog.parse(swapped) != expected
    changed = {"x": inputs["x"] + 1}
    assert plog.parse(plog.rest_predict_log(SERVED, plog.Addressed(), changed, outputs)) != expected
    assert plog.parse(plog.rest_predict_log(SERVED, plog.Addressed(), inputs, outputs)) == expected


def _as_tf(array) -> np.ndarray:
    """What TensorFlow decodes ``array`` to: text as UTF-8 bytes."""
    array = np.asarray(array)
    return np.char.encode(array, "utf-8").astype(object) if array.dtype.kind == "U" else array


def test_tensorflow_reads_the_records_and_their_tensors_back(tmp_path):
    """Through the recorder's files and TensorFlow's own TFRecord reader and tensor decoder."""
    import tensorflow as tf

    prefix = str(tmp_path / "logs" / "m")
    recorder = Recorder(queue_size=len(TENSORS) + 1)
    for inputs, outputs in TENSORS:
        recorder.submit(prefix, "m", lambda i=inputs, o=outputs: plog.rest_predict_log(SERVED, plog.Addressed(), i, o))
    recorder.close()
    raw = [r.numpy() for path in log_files(prefix) for r in tf.data.TFRecordDataset(str(path))]
    assert len(raw) == len(TENSORS)
    for payload, (inputs, outputs) in zip(raw, TENSORS):
        record = prediction_log_pb2.PredictionLog.FromString(payload)
        for name, array in inputs.items():
            np.testing.assert_array_equal(tf.make_ndarray(record.predict_log.request.inputs[name]), _as_tf(array))
        for name, array in outputs.items():
            np.testing.assert_array_equal(tf.make_ndarray(record.predict_log.response.outputs[name]), _as_tf(array))


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 1 << 40])
def test_varints_and_fields_parse_as_protobuf_reads_them(value):
    from google.protobuf.internal.decoder import _DecodeVarint

    assert _DecodeVarint(wire.varint(value), 0) == (value, len(wire.varint(value)))
    payload = b"x" * (value % 1000)
    for number in (1, 15, 16, 300):
        encoded = wire.field(number, payload)
        tag, at = _DecodeVarint(encoded, 0)
        size, at = _DecodeVarint(encoded, at)
        assert (tag >> 3, tag & 7, size, encoded[at:]) == (number, 2, len(payload), payload)
