"""``write_warmup_requests``: TensorFlow Serving's warm-up file from reference rows.

The file is read back with TensorFlow's own TFRecord reader and TensorFlow
Serving's ``PredictionLog`` proto, independently of the bundled server.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from servegate.serving.warmup import (
    MAX_WARMUP_RECORDS,
    WarmupDataError,
    warmup_file,
    write_warmup_from_requests,
    write_warmup_requests,
)


def _read_back(path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    return [prediction_log_pb2.PredictionLog.FromString(raw)
            for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]


@pytest.fixture
def savedmodel(tiny_savedmodel, tmp_path):
    target = tmp_path / "1"
    shutil.copytree(tiny_savedmodel, target)
    return target


def test_rows_of_one_shape_make_one_predict_request_of_the_first_row(savedmodel):
    from servegate.serving.server.tensor_codec import tensor_proto_to_ndarray

    rows = np.arange(12, dtype="float32").reshape(3, 4)
    path = write_warmup_requests(savedmodel, {"features": rows}, model_name="tiny", count=5)
    assert path == savedmodel / "assets.extra" / "tf_serving_warmup_requests" == warmup_file(savedmodel)
    records = _read_back(path)
    assert len(records) == 1  # a second request of the same shape warms nothing more
    assert records[0].WhichOneof("log_type") == "predict_log"
    request = records[0].predict_log.request
    assert request.model_spec.name == "tiny"
    assert request.model_spec.signature_name == "serving_default"
    value = tensor_proto_to_ndarray(request.inputs["features"])
    assert value.dtype == np.float32 and value.shape == (1, 4)
    np.testing.assert_array_equal(value, rows[:1])
    assert sorted(p.name for p in path.parent.iterdir()) == ["tf_serving_warmup_requests"]  # no temp file left


def test_the_signature_asked_for_is_the_requests(savedmodel):
    path = write_warmup_requests(savedmodel, {"features": np.zeros((2, 4), "float32")}, model_name="m",
                                 signature_name="other", count=5000)
    records = _read_back(path)
    assert len(records) == 1
    assert records[0].predict_log.request.model_spec.signature_name == "other"


def test_recorded_requests_give_one_record_per_distinct_shape_first_seen_kept(savedmodel):
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto, tensor_proto_to_ndarray

    def request(batch, fill, signature="serving_default"):
        made = predict_pb2.PredictRequest()
        made.model_spec.name, made.model_spec.signature_name = "old", signature
        made.inputs["features"].CopyFrom(ndarray_to_tensor_proto(np.full((batch, 4), fill, "float32")))
        return made

    recorded = [request(1, 0), request(1, 1), request(8, 2), request(1, 3), request(8, 4), request(1, 5, "other")]
    path = write_warmup_from_requests(savedmodel, recorded, model_name="tiny")
    records = [r.predict_log.request for r in _read_back(path)]
    assert [(r.model_spec.name, r.model_spec.signature_name) for r in records] == [
        ("tiny", "serving_default"), ("tiny", "serving_default"), ("tiny", "other")]
    firsts = [tensor_proto_to_ndarray(r.inputs["features"]) for r in records]
    assert [(a.shape, float(a[0, 0])) for a in firsts] == [((1, 4), 0.0), ((8, 4), 2.0), ((1, 4), 5.0)]


def test_recorded_requests_are_capped_at_tensorflow_servings_limit_of_distinct_shapes(savedmodel):
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    recorded = []
    for batch in range(1, MAX_WARMUP_RECORDS + 6):
        made = predict_pb2.PredictRequest()
        made.inputs["features"].CopyFrom(ndarray_to_tensor_proto(np.zeros((batch, 1), "float32")))
        recorded.append(made)
    assert len(_read_back(write_warmup_from_requests(savedmodel, recorded, model_name="m"))) == 1000


@pytest.mark.parametrize("count", [0, -1])
def test_count_zero_or_less_turns_warm_up_off(savedmodel, count):
    assert write_warmup_requests(savedmodel, {"features": np.zeros((2, 4), "float32")}, model_name="m",
                                 count=count) is None
    assert not (savedmodel / "assets.extra").exists()


def test_a_warm_up_file_the_savedmodel_already_has_is_kept(savedmodel):
    existing = warmup_file(savedmodel)
    existing.parent.mkdir()
    existing.write_bytes(b"the user's own records")
    assert write_warmup_requests(savedmodel, {"features": np.zeros((2, 4), "float32")}, model_name="m") is None
    assert existing.read_bytes() == b"the user's own records"


def test_string_inputs_become_dt_string_tensors(savedmodel):
    from tensorflow.core.framework import types_pb2

    path = write_warmup_requests(savedmodel, {"text": np.array(["a", "bc"])}, model_name="m", count=2)
    (record,) = _read_back(path)  # strings of other lengths are requests of one shape
    tensor = record.predict_log.request.inputs["text"]
    assert tensor.dtype == types_pb2.DT_STRING and list(tensor.string_val) == [b"a"]


@pytest.mark.parametrize("inputs, message", [
    ({}, "expected a non-empty dict"),
    ({"a": np.zeros((2, 4)), "b": np.zeros((3, 4))}, "expected the same number of rows in every input, got {'a': 2, 'b': 3}"),
    ({"a": np.zeros((0, 4))}, "expected at least one row, got 0"),
    ({"a": np.float32(1.0)}, "warm-up input 'a': expected an array of rows"),
    ({"a": np.array([1 + 2j])}, "warm-up input 'a': numpy dtype complex128 has no TensorFlow counterpart"),
])
def test_unusable_rows_are_a_clear_error(savedmodel, inputs, message):
    with pytest.raises(WarmupDataError) as info:
        write_warmup_requests(savedmodel, inputs, model_name="m")
    assert message in str(info.value)
    assert not warmup_file(savedmodel).exists()


def test_a_directory_that_is_not_a_savedmodel_is_a_clear_error(tmp_path):
    with pytest.raises(WarmupDataError, match=r"is not a SavedModel directory \(no saved_model.pb\)"):
        write_warmup_requests(tmp_path, {"features": np.zeros((1, 4), "float32")}, model_name="m")
