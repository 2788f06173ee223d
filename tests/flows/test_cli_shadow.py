"""The proof of the shadow check, end to end as users run it: production serves with request logging on
(the bundled server and its ``logging_config``), real REST and gRPC clients send traffic that reaches a region
of the input space the reference never does, then ``servegate deploy --traffic`` judges candidates on it.

A candidate that answers like production on the reference but not in that region passes every reference
check and is rejected by the shadow check alone (exit 1, the reason names the shadow check and the flip rate);
an honest retrain is promoted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from servegate.traffic.reader import LogReader
from tests.serving.conftest import launch, wait_available

NAME = "shadow-proof"
REPO = Path(__file__).resolve().parents[2]
W = np.array([[1.0], [-1.0], [0.5], [0.25]], dtype="float32")
RETRAIN_DELTA = np.array([[0.04], [0.0], [-0.03], [0.02]], dtype="float32")
REGION = 3.0


def _export(variant: str, path: Path) -> Path:
    from tests.modelzoo import sigmoid_module

    # "region" answers the opposite where x0 > REGION: never in the reference
    return sigmoid_module(path, W + (RETRAIN_DELTA if variant == "retrain" else 0.0),
                          flip_above=REGION if variant == "region" else None)


@pytest.fixture(scope="module")
def env(tmp_path_factory, prefect_harness, tracking_uri) -> dict:
    from prefect.settings import PREFECT_API_URL

    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "HOME": str(home), "SERVEGATE_HOME": str(home / ".servegate"),
            "SERVEGATE_STORE": str(home / "store"), "MLFLOW_TRACKING_URI": tracking_uri,
            "PREFECT_API_URL": PREFECT_API_URL.value(), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _deploy(env: dict, model: Path, reference: Path, *extra: str) -> tuple[int, dict, str]:
    result = subprocess.run([sys.executable, "-m", "servegate", "deploy", "--model", str(model), "--name", NAME,
                             "--reference", str(reference), "--json", *extra], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    return result.returncode, json.loads(result.stdout or "{}"), result.stderr


def _send_production_traffic(server, n: int = 150) -> None:
    """Clients of production: x0 spread over [-5, 5]; REST rows, REST columns and gRPC in turn."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    rng = np.random.default_rng(7)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(n):
            x = rng.normal(size=(1, 4)).astype("float32")
            x[0, 0] = rng.uniform(-5, 5)
            url = f"{server.rest_url}/v1/models/{NAME}:predict"
            if i % 3 == 0:
                requests.post(url, json={"instances": x.tolist()}, timeout=10).raise_for_status()
            elif i % 3 == 1:
                requests.post(url, json={"inputs": {"features": x.tolist()}}, timeout=10).raise_for_status()
            else:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = NAME
                request.inputs["features"].CopyFrom(tf.make_tensor_proto(x))
                stub.Predict(request, timeout=10)


@pytest.mark.reliability
@pytest.mark.slow
def test_the_shadow_check_rejects_what_only_production_traffic_reveals_and_promotes_an_honest_retrain(
        env, tmp_path):
    models = {v: _export(v, tmp_path / v) for v in ("production", "region", "retrain")}
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(size=(300, 4)), -2.5, 2.5).astype("float32")
    reference = tmp_path / "reference.parquet"
    pd.DataFrame({"features": list(x), "label": ((x @ W)[:, 0] >= 0).astype("int64")}).to_parquet(reference)

    code, outcome, stderr = _deploy(env, models["production"], reference)
    assert code == 0, stderr[-3000:]

    prefix = tmp_path / "traffic" / NAME
    config = tmp_path / "production.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "{NAME}" base_path: "{Path(env["SERVEGATE_STORE"]) / "production" / NAME}"'
        f' logging_config {{ log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}'
        " sampling_config { sampling_rate: 1.0 } } } }\n")
    server = launch([f"--model_config_file={config}"], tmp_path / "production-server.log")
    try:
        wait_available(server, NAME)
        _send_production_traffic(server)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.logs()
    traffic = f"{prefix}-*.tfrecord"

    code, outcome, stderr = _deploy(env, models["region"], reference, "--traffic", traffic)
    assert code == 1, stderr[-3000:]
    assert outcome["verdict"] == "rejected"
    reasons = " ".join(outcome["reasons"])
    assert "shadow" in reasons and "flip_rate" in reasons, outcome["reasons"]
    assert not any(r.startswith(("parity", "quality", "regression", "distribution")) for r in outcome["reasons"])
    from tests.flows.test_deploy_flow import read_artifacts

    artifacts = read_artifacts(outcome["prefect_flow_run_id"])
    assert "shadow" in artifacts[f"{NAME}-validation-report"].data
    table = artifacts[f"{NAME}-shadow-most-changed"].data
    changed = json.loads(table) if isinstance(table, str) else table
    assert len(changed) == 20 and float(changed[0]["max_abs_change"]) > 0.5
    from mlflow import MlflowClient

    mlflow = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert mlflow.get_run(outcome["mlflow_run_id"]).data.metrics["shadow.flip_rate"] > 0.05
    assert "report/shadow_most_changed.csv" in {a.path for a in mlflow.list_artifacts(outcome["mlflow_run_id"],
                                                                                     "report")}
    datasets = {d.dataset.name: [t.value for t in d.tags]
                for d in mlflow.get_run(outcome["mlflow_run_id"]).inputs.dataset_inputs}
    assert datasets["shadow_most_changed.csv"] == ["shadow"] and datasets["reference.parquet"] == ["evaluation"]

    warm_from_traffic = tmp_path / "warmup.yaml"
    warm_from_traffic.write_text("warmup:\n  source: traffic\n  requests: 50\n")
    code, outcome, stderr = _deploy(env, models["retrain"], reference, "--traffic", traffic,
                                    "--config", str(warm_from_traffic))
    assert code == 0, (outcome.get("reasons"), stderr[-3000:])
    assert outcome["verdict"] == "promoted" and outcome["figures"]["shadow.flip_rate"] < 0.05
    # its warm-up file holds production's recorded requests (x0 beyond the reference's 2.5), not reference rows
    warmup = (Path(env["SERVEGATE_STORE"]) / "production" / NAME / str(outcome["version"]) / "assets.extra"
              / "tf_serving_warmup_requests")
    (written,) = LogReader().records(warmup)  # production's requests are of one shape (one row): one record
    import tensorflow as tf

    def features(record) -> bytes:
        return tf.make_ndarray(record.predict_log.request.inputs["features"]).tobytes()

    served = {features(r) for path in Path(prefix).parent.glob(f"{NAME}-*.tfrecord")
              for r in LogReader().records(path) if r.HasField("predict_log")}
    assert features(written) in served


# ~45 s (TensorFlow's import and an export before the preflight refuses): CI's second step.
@pytest.mark.reliability
@pytest.mark.slow
def test_traffic_of_another_model_is_refused_before_any_run(env, tmp_path):
    from servegate.traffic import prediction_log as plog
    from servegate.traffic.recorder import Recorder

    model = _export("production", tmp_path / "m")
    reference = tmp_path / "reference.parquet"
    pd.DataFrame({"features": list(np.zeros((4, 4), "float32")), "label": [0, 1, 0, 1]}).to_parquet(reference)
    recorder = Recorder()
    served = plog.Served("someone-else", 1, "serving_default", plog.ORIGIN_ROWS, 1.0)
    recorder.submit(str(tmp_path / "other"), "someone-else",
                    lambda: plog.rest_predict_log(served, plog.Addressed(), {"features": np.zeros((1, 4), "float32")},
                                                  {"probability": np.zeros((1, 1), "float32")}))
    recorder.close()
    code, outcome, stderr = _deploy(env, model, reference, "--traffic", str(tmp_path / "other-*.tfrecord"))
    assert code == 2
    assert "recorded traffic of model 'someone-else', but the model deployed is 'shadow-proof'" in outcome["error"]["message"]
    assert outcome.get("mlflow_run_id") is None


# ~45 s (TensorFlow's import and an export before the preflight refuses): CI's second step.
@pytest.mark.reliability
@pytest.mark.slow
def test_warm_up_from_traffic_without_recorded_traffic_is_refused_naming_the_field(env, tmp_path):
    model = _export("production", tmp_path / "m")
    reference = tmp_path / "reference.parquet"
    pd.DataFrame({"features": list(np.zeros((4, 4), "float32")), "label": [0, 1, 0, 1]}).to_parquet(reference)
    config = tmp_path / "config.yaml"
    config.write_text("warmup:\n  source: traffic\n")
    code, outcome, stderr = _deploy(env, model, reference, "--config", str(config))
    assert code == 2
    assert "field 'warmup.source' is 'traffic' but no recorded traffic is given" in outcome["error"]["message"]
    assert str(config) in outcome["error"]["message"]
