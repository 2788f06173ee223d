"""TensorFlow Serving's Prometheus metrics on the bundled server (``--monitoring_config_file``).

Names, labels, bucket limits and text layout are TensorFlow Serving's
(``util.cc``, ``saved_model_warmup_util.cc``, ``prometheus_exporter.cc``); the
page is parsed with prometheus_client's text parser, as a scraper would.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import grpc
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from servegate.serving.warmup import write_warmup_requests
from tests.conftest import REPO_ROOT
from tests.serving.conftest import wait_available

PROM_PATH = "/monitoring/prometheus/metrics"
# TensorFlow's Buckets::Exponential(10, 1.8, 33) as TensorFlow Serving prints the limits.
TFS_LIMITS = ["10", "18", "32.4", "58.32", "104.976", "188.957", "340.122", "612.22", "1102", "1983.59"]


def _config(tmp_path, text: str, name: str = "monitoring.config"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _families(server, path: str = PROM_PATH) -> tuple[dict, str]:
    reply = requests.get(server.rest_url + path, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(reply.text)}, reply.text


def _value(family, suffix: str = "", **labels) -> float:
    matches = [s.value for s in family.samples
               if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (suffix, labels, family.samples)
    return matches[0]


def _value_or_0(families: dict, name: str, suffix: str = "", **labels) -> float:
    family = families.get(name)
    if family is None or not any(s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
                                 for s in family.samples):
        return 0
    return _value(family, suffix, **labels)


def _grpc_predict(server, name: str, value: list[float]) -> grpc.StatusCode:
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(ndarray_to_tensor_proto(np.array(value, "float32").reshape(-1, 1)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        try:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def metered(module_bundled_server, tfs_testdata, tiny_savedmodel, tmp_path_factory):
    """A server with metrics on, serving half_plus_two and a tiny model with a warm-up file."""
    tmp = tmp_path_factory.mktemp("metered")
    tiny = tmp / "tiny"
    shutil.copytree(tiny_savedmodel, tiny / "1")
    write_warmup_requests(tiny / "1", {"features": np.zeros((2, 4), "float32")}, model_name="tiny", count=3)
    (tmp / "models.config").write_text(
        'model_config_list { config { name: "hp2" base_path: "%s" } config { name: "tiny" base_path: "%s" } }'
        % (tfs_testdata / "saved_model_half_plus_two_cpu", tiny))
    config = _config(tmp, 'prometheus_config { enable: true path: "%s" }' % PROM_PATH)
    server = module_bundled_server([f"--model_config_file={tmp / 'models.config'}",
                                    f"--monitoring_config_file={config}"], wait_for="hp2")
    return server, tiny / "1"


def test_request_count_and_latency_by_model_status_api_and_entrypoint(metered):
    server, _ = metered
    url = f"{server.rest_url}/v1/models"
    before, _ = _families(server)  # the fixture's readiness polls (status GETs) count too, as in TF Serving
    for _ in range(3):
        assert requests.post(f"{url}/hp2:predict", json={"instances": [1.0, 2.0]}, timeout=30).status_code == 200
    assert requests.post(f"{url}/hp2:predict", json={"instances": "x"}, timeout=30).status_code == 400
    assert requests.post(f"{url}/nope:predict", json={"instances": [1.0]}, timeout=30).status_code == 404
    assert requests.get(f"{url}/hp2", timeout=30).status_code == 200
    assert _grpc_predict(server, "hp2", [1.0, 2.0]) == grpc.StatusCode.OK
    assert _grpc_predict(server, "hp2", [3.0]) == grpc.StatusCode.OK
    assert _grpc_predict(server, "nope", [1.0]) == grpc.StatusCode.NOT_FOUND

    after, text = _families(server)

    def added(name, suffix, **labels):
        return _value_or_0(after, name, suffix, **labels) - _value_or_0(before, name, suffix, **labels)

    count = ":tensorflow:serving:request_count"
    assert after[count].type == "counter"
    # TensorFlow Serving's page has the bare counter name (the parser adds _total when reading it).
    ok_total = _value(after[count], "_total", model_name="hp2", status="OK")
    assert f':tensorflow:serving:request_count{{model_name="hp2",status="OK"}} {int(ok_total)}\n' in text
    assert added(count, "_total", model_name="hp2", status="OK") == 6  # 3 REST predict + 1 status GET + 2 gRPC
    assert added(count, "_total", model_name="hp2", status="INVALID_ARGUMENT") == 1
    assert added(count, "_total", model_name="nope", status="NOT_FOUND") == 2  # one REST, one gRPC

    latency = ":tensorflow:serving:request_latency"
    assert after[latency].type == "histogram"
    assert added(latency, "_count", model_name="hp2", API="predict", entrypoint="REST") == 3
    assert added(latency, "_count", model_name="hp2", API="", entrypoint="REST") == 1
    assert added(latency, "_count", model_name="hp2", API="Predict", entrypoint="GRPC") == 2
    assert not [s for s in after[latency].samples if s.labels.get("model_name") == "nope"]  # failures: not timed
    assert 0 < added(latency, "_sum", model_name="hp2", API="predict", entrypoint="REST") < 3 * 30e6  # microseconds
    buckets = [s for s in after[latency].samples if s.name.endswith("_bucket")
               and s.labels["API"] == "predict" and s.labels["entrypoint"] == "REST"]
    assert [b.labels["le"] for b in buckets][:10] == TFS_LIMITS
    assert len(buckets) == 34 and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 3
    assert all(a.value <= b.value for a, b in zip(buckets, buckets[1:]))


def test_scrapes_are_not_counted(metered):
    server, _ = metered
    first, _ = _families(server)
    second, _ = _families(server)
    assert [s for s in first[":tensorflow:serving:request_count"].samples] == \
        [s for s in second[":tensorflow:serving:request_count"].samples]


def test_model_warmup_latency_has_one_sample_per_replay_by_model_path_and_status(metered):
    server, tiny_version = metered
    families, _ = _families(server)
    warmup = families[":tensorflow:serving:model_warmup_latency"]
    assert warmup.type == "histogram"
    assert _value(warmup, "_count", model_path=str(tiny_version), status="OK") == 1
    assert 0 < _value(warmup, "_sum", model_path=str(tiny_version), status="OK")
    # half_plus_two has no warm-up file: nothing replayed, nothing recorded.
    assert {s.labels["model_path"] for s in warmup.samples} == {str(tiny_version)}


def test_metrics_on_another_path_and_off_by_default(tfs_testdata, tmp_path, bundled_server):
    model = ["--model_name=hp2", f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}"]
    custom_config = _config(tmp_path, 'prometheus_config { enable: true path: "/metrics" }', "custom.config")
    disabled_config = _config(tmp_path, "prometheus_config { enable: false }", "disabled.config")
    custom = bundled_server([*model, f"--monitoring_config_file={custom_config}"], wait_for=None)
    disabled = bundled_server([*model, f"--monitoring_config_file={disabled_config}"], wait_for=None)
    plain = bundled_server(model, wait_for=None)
    for server in (custom, disabled, plain):
        wait_available(server, "hp2")
    families, _ = _families(custom, "/metrics")
    assert ":tensorflow:serving:request_count" in families
    assert requests.get(custom.rest_url + PROM_PATH, timeout=10).status_code == 404
    for server in (disabled, plain):
        reply = requests.get(server.rest_url + PROM_PATH, timeout=10)
        assert reply.status_code == 404 and "Malformed request" in reply.json()["error"]
    assert "Exporting Prometheus metrics at:" in custom.logs()
    assert "Prometheus" not in plain.logs()


def _start(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "servegate.serving", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)


@pytest.mark.parametrize("text, expected", [
    ("prometheus_config { enabled: true }",
     'not a text-format MonitoringConfig (expected e.g. prometheus_config { enable: true path: '
     '"/monitoring/prometheus/metrics" }): 1:21 : Message type "tensorflow.serving.PrometheusConfig" has no field '
     'named "enabled".'),
    ('prometheus_config { enable: true path: "metrics" }',
     "field 'prometheus_config.path' is 'metrics': expected a URL path starting with '/' and without spaces"),
    ('prometheus_config { enable: true path: "/v1/models/x" }',
     "field 'prometheus_config.path' is '/v1/models/x': expected a path outside the model API's /v1/"),
])
def test_a_bad_monitoring_config_is_refused_with_the_file_and_field(tfs_testdata, tmp_path, text, expected):
    config = _config(tmp_path, text)
    result = _start([f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}", "--rest_api_port=1",
                     f"--monitoring_config_file={config}"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: monitoring config file {config}: {expected}"


def test_a_missing_monitoring_config_or_no_rest_port_is_refused(tfs_testdata, tmp_path):
    model = f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}"
    missing = _start([model, "--rest_api_port=1", f"--monitoring_config_file={tmp_path / 'nope.txt'}"])
    assert missing.returncode == 2
    assert f"error: monitoring config file {tmp_path / 'nope.txt'}: cannot be read: No such file or directory" in missing.stderr
    config = _config(tmp_path, "prometheus_config { enable: true }")
    no_rest = _start([model, "--port=1", f"--monitoring_config_file={config}"])
    assert no_rest.returncode == 2
    assert (f"error: --monitoring_config_file={config}: metrics are served on the REST port, but --rest_api_port "
            "is 0 (expected a REST port)") in no_rest.stderr


def test_tensorflow_servings_bucket_limits():
    from servegate.serving.server.metrics import LATENCY_BUCKETS_US

    assert len(LATENCY_BUCKETS_US) == 34 and math.isinf(LATENCY_BUCKETS_US[-1])
    assert LATENCY_BUCKETS_US[32] == pytest.approx(10 * 1.8**32)
