"""The bundled server's request log (``logging_config``), met as users meet it: a subprocess started with a
model config file, REST and gRPC requests, the TFRecord files read back."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

from servegate.traffic.reader import LogReader
from servegate.traffic.recorder import log_files
from tests.conftest import REPO_ROOT

MODEL = "half"


def _config(path: Path, base: Path, prefix: Path | None, rate: float = 1.0, collector: str = "tfrecord") -> Path:
    logging = ""
    if prefix is not None:
        logging = (f' logging_config {{ log_collector_config {{ type: "{collector}" filename_prefix: "{prefix}" }}'
                   f" sampling_config {{ sampling_rate: {rate} }} }}")
    path.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}"{logging} }} }}\n')
    return path


def _read(prefix: Path, expected: int, timeout: float = 15.0) -> list:
    deadline = time.monotonic() + timeout
    records: list = []
    while time.monotonic() < deadline:
        reader = LogReader()
        records = [r for path in log_files(str(prefix)) for r in reader.records(path)]
        if len(records) >= expected:
            return records
        time.sleep(0.2)
    return records


def _grpc_predict(server, x: list[float]):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, dtype=np.float32)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)


def _post(server, verb: str, body: dict) -> dict:
    response = requests.post(f"{server.rest_url}/v1/models/{MODEL}:{verb}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_rest_and_grpc_requests_are_logged_in_tf_servings_format(bundled_server, tfs_testdata, tmp_path):
    import tensorflow as tf

    prefix = tmp_path / "reqlogs" / "half"
    config = _config(tmp_path / "models.config", tfs_testdata / "saved_model_half_plus_two_cpu", prefix)
    server = bundled_server([f"--model_config_file={config}"], wait_for=MODEL)
    _post(server, "predict", {"instances": [1.0, 2.0]})
    _post(server, "predict", {"inputs": {"x": [3.0]}})
    _post(server, "classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
    _post(server, "regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 4.0}]})
    answer = _grpc_predict(server, [5.0])
    assert tf.make_ndarray(answer.outputs["y"]).tolist() == [4.5]

    records = _read(prefix, 5)
    assert len(records) == 5, server.logs()[-3000:]
    origins = [r.log_metadata.request_origin for r in records]
    assert origins == ["rest:instances", "rest:inputs", "rest:examples", "rest:examples", "grpc"]
    for record in records:
        assert record.log_metadata.model_spec.name == MODEL
        assert record.log_metadata.model_spec.version.value == 123
        assert record.log_metadata.timestamp_secs > time.time() - 300
        assert record.log_metadata.sampling_config.sampling_rate == 1.0
    rows, columns, classify, regress, grpc_log = records
    assert tf.make_ndarray(rows.predict_log.request.inputs["x"]).tolist() == [1.0, 2.0]
    assert tf.make_ndarray(rows.predict_log.response.outputs["y"]).tolist() == [2.5, 3.0]
    assert tf.make_ndarray(columns.predict_log.request.inputs["x"]).tolist() == [3.0]
    assert classify.classify_log.request.input.example_list.examples[0].features.feature["x"].float_list.value == [2.0]
    assert classify.classify_log.response.result.classifications[0].classes[0].score == 3.0
    assert classify.log_metadata.model_spec.signature_name == "classify_x_to_y"
    assert regress.regress_log.response.result.regressions[0].value == 4.0
    assert tf.make_ndarray(grpc_log.predict_log.response.outputs["y"]).tolist() == [4.5]
    files = log_files(str(prefix))
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE(prefix.parent.stat().st_mode) == 0o700
    assert "Traceback" not in server.logs()


@pytest.mark.reliability  # waits for the config file's poll while serving (~15 s): CI's second step
def test_sampling_zero_logs_nothing_until_the_config_file_changes_while_serving(bundled_server, tfs_testdata,
                                                                                tmp_path):
    prefix = tmp_path / "reqlogs" / "half"
    base = tfs_testdata / "saved_model_half_plus_two_cpu"
    config = _config(tmp_path / "models.config", base, prefix, rate=0.0)
    server = bundled_server([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=0.3"],
                            wait_for=MODEL)
    for _ in range(5):
        _post(server, "predict", {"instances": [1.0]})
    time.sleep(1.5)  # longer than the writer's idle flush: anything queued would be on disk now
    assert _read(prefix, 1, timeout=0.1) == []

    _config(config, base, prefix, rate=1.0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _read(prefix, 1, timeout=0.1):
        _post(server, "predict", {"instances": [7.0]})
        time.sleep(0.2)
    records = _read(prefix, 1, timeout=0.1)
    assert records and all(r.log_metadata.sampling_config.sampling_rate == 1.0 for r in records)
    assert "Request logging for model half: tfrecord at sampling rate 1" in server.logs()
    assert "Traceback" not in server.logs()


def test_files_rotate_by_size_and_the_total_is_capped(bundled_server, tfs_testdata, tmp_path):
    prefix = tmp_path / "reqlogs" / "half"
    config = _config(tmp_path / "models.config", tfs_testdata / "saved_model_half_plus_two_cpu", prefix)
    file_max, total_max = 2048, 8192
    server = bundled_server([f"--model_config_file={config}", f"--request_log_file_max_mb={file_max / 2**20}",
                             f"--request_log_total_max_mb={total_max / 2**20}"], wait_for=MODEL)
    for i in range(120):
        _post(server, "predict", {"instances": [float(i)] * 8})
    time.sleep(1.5)
    files = log_files(str(prefix))
    sizes = [p.stat().st_size for p in files]
    assert len(files) >= 3, sizes
    assert all(size <= file_max for size in sizes), sizes
    assert sum(sizes) <= total_max, sizes
    # the oldest were deleted: the newest request is still there, the first is gone
    records = [r for p in files for r in LogReader().records(p)]
    import tensorflow as tf

    firsts = [tf.make_ndarray(r.predict_log.request.inputs["x"])[0] for r in records]
    assert 119.0 in firsts and 0.0 not in firsts
    assert "Traceback" not in server.logs()


def test_a_record_that_cannot_be_written_is_counted_as_dropped_and_the_request_still_answers(
        bundled_server, tfs_testdata, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be")
    config = _config(tmp_path / "models.config", tfs_testdata / "saved_model_half_plus_two_cpu", blocker / "half")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    server = bundled_server([f"--model_config_file={config}", f"--monitoring_config_file={monitoring}"],
                            wait_for=MODEL)
    for _ in range(3):
        assert _post(server, "predict", {"instances": [1.0]}) == {"predictions": [2.5]}
    deadline = time.monotonic() + 10
    page = ""
    while time.monotonic() < deadline:
        page = requests.get(f"{server.rest_url}/metrics", timeout=5).text
        if ':servegate:request_log:dropped{model_name="half",reason="error"} 3' in page:
            break
        time.sleep(0.2)
    assert ':servegate:request_log:dropped{model_name="half",reason="error"} 3' in page


def test_an_unknown_collector_type_stops_the_start_naming_it(tfs_testdata, tmp_path):
    config = _config(tmp_path / "models.config", tfs_testdata / "saved_model_half_plus_two_cpu",
                     tmp_path / "reqlogs" / "half", collector="kafka")
    result = subprocess.run([sys.executable, "-m", "servegate.serving", "--port=0", "--rest_api_port=1",
                             f"--model_config_file={config}"], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "log_collector_config.type 'kafka'" in last and "tfrecord" in last and str(config) in last
