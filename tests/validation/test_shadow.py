"""The shadow check with real tiny models in one canary: production (``stable``), a candidate that agrees
with production on the reference rows but not in a region only production traffic reaches, and an honest
retrain. Recorded traffic is written by the request log's own writer in TF Serving's format, in the three
forms clients send (gRPC, REST rows, REST columns)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from servegate.errors import ValidationInputError
from servegate.traffic import prediction_log as plog
from servegate.traffic.recorder import Recorder, log_files
from servegate.validation import load_config, load_reference, validate
from tests.support.canary import running_canary

MODEL = "shadowed"
W = np.array([[1.0], [-1.0], [0.5], [0.25]], dtype="float32")
REGION = 3.0  # x0 above this: never in the reference, often in production traffic
VERSIONS = {"production": 1, "region": 2, "retrain": 3, "renamed": 4}
SIGNATURE = {"inputs": {"features": {"dtype": "float32", "shape": [None, 4]}},
             "outputs": {"probability": {"dtype": "float32", "shape": [None, 1]}}}


def _export(variant: str, path):
    from tests.modelzoo import sigmoid_module

    return sigmoid_module(path, W * (1.03 if variant == "retrain" else 1.0),
                          flip_above=REGION if variant == "region" else None,
                          input_name="inputs" if variant == "renamed" else "features")


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    from servegate.serving.runners import CanarySpec

    root = tmp_path_factory.mktemp("shadow_models")
    dirs = {VERSIONS[v]: _export(v, root / v) for v in VERSIONS}
    with running_canary(CanarySpec(MODEL, dirs, labels={"stable": 1}),
                        tmp_path_factory.mktemp("servegate_home")) as (runner, _):
        yield runner


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(size=(200, 4)), -2.5, 2.5).astype("float32")
    label = (1 / (1 + np.exp(-(x @ W)))[:, 0] >= 0.5).astype("int64")
    path = tmp_path_factory.mktemp("shadow_ref") / "reference.parquet"
    pd.DataFrame({"features": list(x), "label": label}).to_parquet(path)
    return path


def _record_traffic(prefix: str, n: int = 300, model: str = MODEL, signature: str = "serving_default") -> None:
    """Production's traffic: x0 spread over [-5, 5], a fifth of it above REGION; three client forms."""
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    rng = np.random.default_rng(1)
    recorder = Recorder()
    for i in range(n):
        x = rng.normal(size=(1, 4)).astype("float32")
        x[0, 0] = rng.uniform(-5, 5)
        y = (1 / (1 + np.exp(-(x @ W)))).astype("float32")
        origin = plog.ORIGINS[i % 3]
        served = plog.Served(model, 1, signature, origin, 1.0)
        if origin == plog.ORIGIN_GRPC:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.inputs["features"].CopyFrom(ndarray_to_tensor_proto(x))
            response = predict_pb2.PredictResponse()
            response.outputs["probability"].CopyFrom(ndarray_to_tensor_proto(y))
            build = (lambda s=served, q=request, r=response: plog.grpc_predict_log(s, q, r))
        else:
            build = (lambda s=served, x=x, y=y: plog.rest_predict_log(s, plog.Addressed(), {"features": x},
                                                                      {"probability": y}))
        recorder.submit(prefix, model, build)
    recorder.close()


def _validate(canary, reference, tmp_path, candidate: str, config: dict, signature: dict = SIGNATURE):
    config = load_config({"parity": {"enabled": False}, "service_level": {"enabled": False}, **config})
    return validate(canary, load_reference(reference, signature, config), config,
                    candidate=VERSIONS[candidate], baseline="stable", out_dir=tmp_path / "report")


def test_a_candidate_that_differs_only_where_production_traffic_goes_is_rejected_by_the_shadow_check(
        canary, reference, tmp_path):
    prefix = str(tmp_path / "logs" / MODEL)
    _record_traffic(prefix)
    without = _validate(canary, reference, tmp_path / "a", "region", {"regression": {"max_relative_degradation": 0.02}})
    assert without.verdict == "passed", without.to_markdown()  # the reference alone promotes it
    assert without.check("shadow").status == "skipped"
    report = _validate(canary, reference, tmp_path / "b", "region", {"traffic": {"logs": prefix + "-*.tfrecord"}})
    assert report.failed_checks == ["shadow"], report.to_markdown()
    figures = {m.metric: m for m in report.check("shadow").measurements}
    assert figures["flip_rate"].value > 0.1 and not figures["flip_rate"].passed
    assert figures["requests_replayed"].value == 300
    assert "flip_rate" in report.check("shadow").message
    changed = pd.read_csv(report.artifacts["shadow_most_changed"])
    assert len(changed) == 20 and changed["max_abs_change"].iloc[0] > 0.5  # the flipped region leads


def test_an_honest_retrain_passes_the_shadow_check(canary, reference, tmp_path):
    prefix = str(tmp_path / "logs" / MODEL)
    _record_traffic(prefix)
    report = _validate(canary, reference, tmp_path, "retrain", {"traffic": {"logs": prefix + "-*.tfrecord"}})
    assert report.check("shadow").status == "passed", report.to_markdown()
    figures = {m.metric: m for m in report.check("shadow").measurements}
    assert figures["flip_rate"].value < 0.05 and figures["positive_rate_change"].value < 0.05


def test_no_recorded_traffic_is_a_gate_not_run_and_require_makes_it_a_rejection(canary, reference, tmp_path):
    empty = str(tmp_path / "nothing-here-*.tfrecord")
    loose = _validate(canary, reference, tmp_path / "loose", "retrain", {"traffic": {"logs": empty}})
    assert loose.verdict == "passed"
    assert "shadow" in {g["check"] for g in loose.to_dict()["gates_not_run"]}
    assert "no recorded request to replay" in loose.check("shadow").message
    strict = _validate(canary, reference, tmp_path / "strict", "retrain",
                       {"traffic": {"logs": empty}, "require": ["shadow"]})
    assert strict.failed_checks == ["shadow"]
    assert "required by the config (require: [shadow])" in strict.check("shadow").message


def test_a_truncated_log_is_read_up_to_its_last_whole_record(canary, reference, tmp_path):
    prefix = str(tmp_path / "logs" / MODEL)
    _record_traffic(prefix, n=30)
    (path,) = log_files(prefix)
    path.write_bytes(path.read_bytes()[:-10])
    report = _validate(canary, reference, tmp_path, "retrain", {"traffic": {"logs": prefix + "-*.tfrecord"}})
    shadow = report.check("shadow")
    assert {m.metric: m for m in shadow.measurements}["requests_replayed"].value == 29
    assert "truncated record" in shadow.message and path.name in shadow.message


@pytest.mark.parametrize("model,signature,expected", [
    ("another_model", "serving_default", "recorded traffic of model 'another_model', but the model deployed is"),
    (MODEL, "classify_x", "recorded on signature 'classify_x', but the signature validated is 'serving_default'"),
])
def test_logs_of_another_model_or_signature_are_refused(canary, reference, tmp_path, model, signature, expected):
    prefix = str(tmp_path / "logs" / model)
    _record_traffic(prefix, n=3, model=model, signature=signature)
    with pytest.raises(ValidationInputError, match=expected):
        _validate(canary, reference, tmp_path, "retrain", {"traffic": {"logs": prefix + "-*.tfrecord"}})


def test_a_candidate_that_cannot_answer_production_requests_is_rejected_naming_one(canary, reference, tmp_path):
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    prefix = str(tmp_path / "logs" / MODEL)
    recorder = Recorder()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["features"].CopyFrom(ndarray_to_tensor_proto(np.zeros((1, 4), "float32")))
    # an input the candidate does not know: production (stable) is asked the same and refuses too -> left out
    bad = predict_pb2.PredictRequest()
    bad.CopyFrom(request)
    bad.inputs["extra"].CopyFrom(ndarray_to_tensor_proto(np.zeros((1,), "float32")))
    response = predict_pb2.PredictResponse()
    for q in (request, bad):
        served = plog.Served(MODEL, 1, "serving_default", plog.ORIGIN_GRPC, 1.0)
        recorder.submit(prefix, MODEL, lambda s=served, q=q: plog.grpc_predict_log(s, q, response))
    recorder.close()
    report = _validate(canary, reference, tmp_path, "retrain", {"traffic": {"logs": prefix + "-*.tfrecord"}})
    assert report.check("shadow").status == "passed"
    assert "production could not answer either" in report.check("shadow").message


def test_a_candidate_that_breaks_real_clients_payloads_is_rejected_naming_an_example(canary, reference, tmp_path):
    """The input was renamed and the reference adapted to it: the reference checks pass, real payloads fail."""
    prefix = str(tmp_path / "logs" / MODEL)
    _record_traffic(prefix, n=9)
    renamed = {"inputs": {"inputs": SIGNATURE["inputs"]["features"]}, "outputs": SIGNATURE["outputs"]}
    report = _validate(canary, reference, tmp_path, "renamed",
                       {"traffic": {"logs": prefix + "-*.tfrecord"}, "reference": {"columns": {"inputs": "features"}},
                        "contract": {"enabled": False}, "regression": {"enabled": False},
                        "distribution": {"enabled": False}}, signature=renamed)
    assert report.failed_checks == ["shadow"], report.to_markdown()
    message = report.check("shadow").message
    # row-form requests of a one-input model carry no input name, so those still work (as in TF Serving)
    assert "the candidate could not answer 6 of 9 recorded requests that production answered" in message
    assert "record #1 (grpc predict)" in message and "features" in message
