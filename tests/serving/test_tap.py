"""``servegate tap`` in front of a bundled server started without logging (standing in for stock TF Serving),
run as users run it: a subprocess with a fresh HOME, REST and gRPC traffic mixed."""

from __future__ import annotations

import os
import signal
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
from tests.serving.conftest import free_port

MODEL = "default"


@pytest.fixture(scope="module")
def upstream(module_bundled_server, tfs_testdata):
    return module_bundled_server([f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}"])


class Tap:
    def __init__(self, log_dir: Path, upstream, home: Path, *extra: str) -> None:
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.log_dir = log_dir
        self.log_path = home / "tap.log"
        command = [sys.executable, "-m", "servegate", "tap", f"--log-dir={log_dir}",
                   f"--upstream-rest={upstream.rest_url}", f"--upstream-grpc={upstream.grpc_target}",
                   f"--port={self.rest_port}", f"--grpc-port={self.grpc_port}", *extra]
        env = {**os.environ, "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.logs()
            try:
                requests.get(f"{self.rest_url}/v1/models/{MODEL}", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        pytest.fail(f"tap did not start:\n{self.logs()}")

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        return self.proc.returncode


@pytest.fixture
def start_tap(upstream, tmp_path):
    taps: list[Tap] = []

    def start(log_dir: Path, *extra: str) -> Tap:
        home = tmp_path / f"home{len(taps)}"
        home.mkdir()
        taps.append(Tap(log_dir, upstream, home, *extra))
        return taps[-1]

    yield start
    for tap in taps:
        tap.stop()


def _grpc_predict(target: str, name: str, x: list[float]):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, dtype=np.float32)))
    with grpc.insecure_channel(target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)


REST_CALLS = [
    ("post", f"/v1/models/{MODEL}:predict", {"instances": [1.0, 2.0]}),
    ("post", f"/v1/models/{MODEL}:predict", {"inputs": {"x": [3.0]}}),
    ("post", f"/v1/models/{MODEL}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}),
    ("post", f"/v1/models/{MODEL}/versions/123:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 4.0}]}),
    ("post", "/v1/models/nosuchmodel:predict", {"instances": [1.0]}),
    ("post", f"/v1/models/{MODEL}:predict", {"instances": [{"nope": 1.0}]}),  # upstream's 400
    ("get", f"/v1/models/{MODEL}", None),
    ("get", f"/v1/models/{MODEL}/metadata", None),
]


def test_the_tap_answers_exactly_as_upstream_and_records_rest_and_grpc_traffic(upstream, start_tap, tmp_path):
    import tensorflow as tf

    tap = start_tap(tmp_path / "traffic")
    for method, path, body in REST_CALLS:
        direct = getattr(requests, method)(upstream.rest_url + path, json=body, timeout=10)
        tapped = getattr(requests, method)(tap.rest_url + path, json=body, timeout=10)
        assert (tapped.status_code, tapped.content) == (direct.status_code, direct.content), path
        assert tapped.headers["content-type"] == direct.headers["content-type"]
    direct = _grpc_predict(upstream.grpc_target, MODEL, [5.0])
    assert _grpc_predict(f"127.0.0.1:{tap.grpc_port}", MODEL, [5.0]) == direct
    with pytest.raises(grpc.RpcError) as direct_error:
        _grpc_predict(upstream.grpc_target, "nosuchmodel", [1.0])
    with pytest.raises(grpc.RpcError) as tapped_error:
        _grpc_predict(f"127.0.0.1:{tap.grpc_port}", "nosuchmodel", [1.0])
    assert tapped_error.value.code() == direct_error.value.code() == grpc.StatusCode.NOT_FOUND
    assert tapped_error.value.details() == direct_error.value.details()

    deadline = time.monotonic() + 15
    records: list = []
    while time.monotonic() < deadline and len(records) < 5:  # one more would show up in the comparison
        time.sleep(0.3)
        records = [r for p in log_files(str(tmp_path / "traffic" / MODEL)) for r in LogReader().records(p)]
    origins = [r.log_metadata.request_origin for r in records]
    assert origins == ["rest:instances", "rest:inputs", "rest:examples", "rest:examples", "grpc"], tap.logs()
    assert all(r.log_metadata.model_spec.version.value == 123 for r in records)
    assert tf.make_ndarray(records[0].predict_log.response.outputs["y"]).tolist() == [2.5, 3.0]
    assert records[3].regress_log.request.model_spec.version.value == 123
    assert records[4].predict_log.response == direct
    assert tap.stop() == 0
    assert "Traceback" not in tap.logs()


def test_a_recording_failure_never_reaches_the_client(upstream, start_tap, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    tap = start_tap(blocker)
    for _ in range(3):
        answer = requests.post(f"{tap.rest_url}/v1/models/{MODEL}:predict", json={"instances": [1.0]}, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"predictions": [2.5]}
    import tensorflow as tf

    answer = _grpc_predict(f"127.0.0.1:{tap.grpc_port}", MODEL, [1.0])
    assert tf.make_ndarray(answer.outputs["y"]).tolist() == [2.5]
    deadline = time.monotonic() + 10
    page = ""
    while time.monotonic() < deadline:
        page = requests.get(f"{tap.rest_url}/servegate/tap/metrics", timeout=5).text
        if ':servegate:request_log:dropped{model_name="default",reason="error"} 4' in page:
            break
        time.sleep(0.2)
    assert ':servegate:request_log:dropped{model_name="default",reason="error"} 4' in page


def test_tap_without_an_upstream_is_refused_naming_the_flags(tmp_path):
    result = subprocess.run([sys.executable, "-m", "servegate", "tap", f"--log-dir={tmp_path}"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "--upstream-rest" in result.stderr.strip().splitlines()[-1]
