"""The bundled server's model warm-up, as TensorFlow Serving does it (saved_model_warmup_util.cc).

Real servers (``python -m servegate.serving``) on real models: TensorFlow
Serving's stateful ``saved_model_counter`` proves how many times the records
ran, a tiny Keras model proves the round trip from ``write_warmup_requests``,
and broken warm-up files prove that a version whose warm-up fails never
becomes AVAILABLE while the version already serving keeps serving.
"""

from __future__ import annotations

import shutil
import time

import grpc
import numpy as np
import pytest
import requests

from servegate.serving.warmup import warmup_file, write_warmup_requests
from tests.serving.conftest import wait_available


def _write_records(version_dir, records: list[bytes]) -> None:
    import tensorflow as tf

    path = warmup_file(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _predict_log(signature: str, inputs: dict | None = None) -> bytes:
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "counter"
    request.model_spec.signature_name = signature
    for name, value in (inputs or {}).items():
        request.inputs[name].CopyFrom(ndarray_to_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString()


def _grpc_counter(server) -> float:
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from servegate.serving.server.tensor_codec import tensor_proto_to_ndarray

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "counter"
    request.model_spec.signature_name = "get_counter"
    with grpc.insecure_channel(server.grpc_target) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return float(tensor_proto_to_ndarray(reply.outputs["output"]))


def test_each_record_runs_num_request_iterations_times_and_not_at_all_when_disabled(
        tfs_testdata, tmp_path, bundled_server):
    base = tmp_path / "counter"
    shutil.copytree(tfs_testdata / "saved_model_counter", base)
    _write_records(base / "00000123", [_predict_log("incr_counter")] * 3)
    model = ["--model_name=counter", f"--model_base_path={base}"]
    # Started together: each pays TensorFlow's import at the same time.
    default = bundled_server(model, wait_for=None)
    twice = bundled_server([*model, "--num_request_iterations_for_warmup=2"], wait_for=None)
    disabled = bundled_server([*model, "--enable_model_warmup=false"], wait_for=None)
    for server in (default, twice, disabled):
        wait_available(server, "counter")
    assert _grpc_counter(default) == 3.0
    assert _grpc_counter(twice) == 6.0
    assert _grpc_counter(disabled) == 0.0
    assert "Number of warmup records read: 3." in default.logs()
    assert "warmup" not in disabled.logs().lower()


def test_the_writers_file_is_replayed_before_the_version_is_available(tiny_savedmodel, tmp_path, bundled_server):
    base = tmp_path / "tiny"
    shutil.copytree(tiny_savedmodel, base / "1")
    rows = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
    write_warmup_requests(base / "1", {"features": rows}, model_name="tiny", count=7)
    server = bundled_server(["--model_name=tiny", f"--model_base_path={base}"], wait_for="tiny")
    logs = server.logs()
    finished = logs.index(f"Finished reading warmup data for model at {warmup_file(base / '1')}. "
                          "Number of warmup records read: 1.")  # one request shape
    assert finished < logs.index("Successfully loaded servable version {name: tiny version: 1}")
    answer = requests.post(f"{server.rest_url}/v1/models/tiny:predict", json={"instances": rows.tolist()}, timeout=30)
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 4


def test_a_failing_warm_up_at_start_up_fails_the_server_like_a_failed_load(tiny_savedmodel, tmp_path, bundled_server):
    base = tmp_path / "tiny"
    shutil.copytree(tiny_savedmodel, base / "1")
    write_warmup_requests(base / "1", {"wrong": np.zeros((1, 4), "float32")}, model_name="tiny", count=2)
    server = bundled_server(["--model_name=tiny", f"--model_base_path={base}", "--max_num_load_retries=0"],
                            wait_for=None)
    assert server.proc.wait(120) == 1
    assert ("Failed to start server. Error: Loading servable {name: tiny version: 1} failed: INVALID_ARGUMENT: "
            "input tensor alias not found in signature: wrong.") in server.logs()


def _wait_state(server, name: str, version: int, state: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = requests.get(f"{server.rest_url}/v1/models/{name}/versions/{version}", timeout=5).json()
        statuses = last.get("model_version_status", [])
        if statuses and statuses[0]["state"] == state:
            return statuses[0]
        time.sleep(0.1)
    pytest.fail(f"version {version} never reached {state}: {last}\n{server.logs()[-3000:]}")


def _stage(source, base, version: int, records: list[bytes] | None = None, rows: dict | None = None) -> None:
    """Put a version in place the way the store does: complete under a temp name, then one rename."""
    temp = base / f".tmp-{version}"
    shutil.copytree(source, temp)
    if rows is not None:
        write_warmup_requests(temp, rows, model_name="tiny", count=2)
    if records is not None:
        _write_records(temp, records)
    temp.rename(base / str(version))


# Each broken file, with the status code and message TensorFlow Serving gives its failed load.
BROKEN = [
    ("alias", "INVALID_ARGUMENT", "input tensor alias not found in signature: wrong."),
    ("not_tfrecord", "DATA_LOSS", ". Please verify your warmup data is in TFRecord format."),
    ("not_a_prediction_log", "INVALID_ARGUMENT", "Failed to parse warmup record #1 from "),
    ("too_many", "INVALID_ARGUMENT", "Number of warmup records exceeds the maximum (1000) at "),
    ("session_run", "UNIMPLEMENTED", "Unsupported log_type for warmup: 5"),
]


def _stage_broken(source, base, version: int, broken: str, features: np.ndarray) -> None:
    if broken == "alias":
        _stage(source, base, version, rows={"wrong": features})
    elif broken == "not_tfrecord":
        _stage(source, base, version, records=[])
        warmup_file(base / str(version)).write_bytes(b"not a TFRecord file at all, just text")
    elif broken == "not_a_prediction_log":
        _stage(source, base, version, records=[b"\xff\xff\xff"])
    elif broken == "session_run":
        from tensorflow_serving.apis import prediction_log_pb2

        record = prediction_log_pb2.PredictionLog(session_run_log=prediction_log_pb2.SessionRunLog())
        _stage(source, base, version, records=[_tiny_predict_log(features), record.SerializeToString()])
    else:
        _stage(source, base, version, records=[_tiny_predict_log(features)] * 1001)


def test_a_new_version_whose_warm_up_fails_never_becomes_available_and_the_old_one_keeps_serving(
        tiny_savedmodel, tmp_path, bundled_server):
    base = tmp_path / "tiny"
    shutil.copytree(tiny_savedmodel, base / "1")
    server = bundled_server(["--model_name=tiny", f"--model_base_path={base}", "--max_num_load_retries=0",
                             "--file_system_poll_wait_seconds=0.2"], wait_for="tiny")
    features = np.ones((1, 4), "float32")
    for version, (broken, code, message) in enumerate(BROKEN, start=2):
        _stage_broken(tiny_savedmodel, base, version, broken, features)
        status = _wait_state(server, "tiny", version, "END")
        assert status["status"]["error_code"] == code, broken
        assert message in status["status"]["error_message"], broken
        assert _wait_state(server, "tiny", 1, "AVAILABLE")
        answer = requests.post(f"{server.rest_url}/v1/models/tiny:predict",
                               json={"instances": features.tolist()}, timeout=30)
        assert answer.status_code == 200, answer.text
    assert "Traceback" not in server.logs()


def _tiny_predict_log(features: np.ndarray) -> bytes:
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.inputs["features"].CopyFrom(ndarray_to_tensor_proto(features))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString()


def _mixed_records(classify_signature: str) -> list[bytes]:
    """TensorFlow Serving's mixed warm-up (saved_model_warmup_test): classify, regress, multi-inference, predict."""
    from tensorflow.core.example import example_pb2, feature_pb2
    from tensorflow_serving.apis import (classification_pb2, inference_pb2, input_pb2, predict_pb2,
                                         prediction_log_pb2, regression_pb2)

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    example = example_pb2.Example(features=feature_pb2.Features(
        feature={"x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[2.0]))}))
    examples = input_pb2.Input(example_list=input_pb2.ExampleList(examples=[example]))
    classify = classification_pb2.ClassificationRequest(input=examples)
    classify.model_spec.signature_name = classify_signature
    regress = regression_pb2.RegressionRequest(input=examples)
    regress.model_spec.signature_name = "regress_x_to_y"
    multi = inference_pb2.MultiInferenceRequest(input=examples)
    for signature, method in (("regress_x_to_y", "tensorflow/serving/regress"),
                              (classify_signature, "tensorflow/serving/classify")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.signature_name = signature
    predict = predict_pb2.PredictRequest()
    predict.inputs["x"].CopyFrom(ndarray_to_tensor_proto(np.array([[2.0]], "float32")))
    logs = [
        prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify)),
        prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=regress)),
        prediction_log_pb2.PredictionLog(multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi)),
        prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict)),
    ]
    return [log.SerializeToString() for log in logs]


def test_classify_regress_and_multi_inference_records_are_replayed_too(tfs_testdata, tmp_path, bundled_server):
    base = tmp_path / "hp2"
    source = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    shutil.copytree(source, base / "1")
    _write_records(base / "1", _mixed_records("classify_x_to_y"))
    server = bundled_server(["--model_name=hp2", f"--model_base_path={base}", "--max_num_load_retries=0",
                             "--file_system_poll_wait_seconds=0.2"], wait_for="hp2")
    assert "Number of warmup records read: 4." in server.logs()
    # The same records against a signature of the wrong kind fail the load, as serving them would.
    _stage(source, base, 2, records=_mixed_records("serving_default"))
    status = _wait_state(server, "hp2", 2, "END")
    assert status["status"] == {
        "error_code": "INVALID_ARGUMENT",
        "error_message": "Expected classification signature method_name to be tensorflow/serving/classify. "
                         "Was: tensorflow/serving/predict",
    }
