"""The shadow check on recorded REST ``:classify`` and ``:regress`` traffic, with real tiny models in one canary.

The models are ``y = 0.5 x + b`` with TF Serving's classify and regress signatures (tests/modelzoo.py
``examples_module``): production (b = 2), an honest retrain (b = 2.01), a shifted candidate (b = 3) whose
answers move by 1, and one that lost its classify signature. Recorded requests are built the way the
bundled server logs them: its own JSON decoding (``json_api.serialized_examples``) and the request log's
record builders, written by the request log's writer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servegate.serving.server.json_api import serialized_examples
from servegate.traffic import prediction_log as plog
from servegate.traffic.recorder import Recorder
from servegate.validation import load_config, load_reference, validate
from servegate.validation.shadow_logs import TrafficLogError
from tests.support.canary import running_canary

MODEL = "halves"
VERSIONS = {"production": 1, "retrain": 2, "shifted": 3, "no_classify": 4}
INTERCEPT = {"production": 2.0, "retrain": 2.01, "shifted": 3.0, "no_classify": 2.0}
SIGNATURE = {"inputs": {"x": {"dtype": "float32", "shape": [None, 1]}},
             "outputs": {"y": {"dtype": "float32", "shape": [None, 1]}}}
SIGNATURE_OF = {"classify": "classify_x_to_y", "regress": "regress_x_to_y"}


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    from servegate.serving.runners import CanarySpec
    from tests.modelzoo import examples_module

    root = tmp_path_factory.mktemp("shadow_examples_models")
    dirs = {VERSIONS[v]: examples_module(root / v, 0.5, INTERCEPT[v], classify=v != "no_classify")
            for v in VERSIONS}
    with running_canary(CanarySpec(MODEL, dirs, labels={"stable": 1}),
                        tmp_path_factory.mktemp("servegate_home")) as (runner, _):
        yield runner


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    x = np.linspace(-1, 1, 50, dtype="float32").reshape(-1, 1)
    path = tmp_path_factory.mktemp("shadow_examples_ref") / "reference.parquet"
    pd.DataFrame({"x": list(x), "label": (0.5 * x + 2.0)[:, 0].astype("float64")}).to_parquet(path)
    return path


def _record(prefix: str, kind: str, low: float, high: float, n: int = 120, signature: str | None = None) -> None:
    """``n`` REST ``:kind`` requests of production (one to three examples each, x uniform in [low, high])."""
    rng = np.random.default_rng(3)
    signature = signature or SIGNATURE_OF[kind]
    recorder = Recorder()
    for _ in range(n):
        xs = rng.uniform(low, high, size=rng.integers(1, 4))
        body = {"signature_name": signature, "examples": [{"x": float(x)} for x in xs]}
        answers = [0.5 * x + 2.0 for x in xs]
        served = plog.Served(MODEL, 1, signature, plog.ORIGIN_EXAMPLES, 1.0)
        addressed = plog.Addressed(signature_name=signature)
        if kind == "classify":
            build = (lambda s=served, a=addressed, b=body, y=answers: plog.rest_classify_log(
                s, a, serialized_examples(b), {"results": [[["", v]] for v in y]}))
        else:
            build = (lambda s=served, a=addressed, b=body, y=answers: plog.rest_regress_log(
                s, a, serialized_examples(b), {"results": y}))
        recorder.submit(prefix, MODEL, build)
    recorder.close()


def _validate(canary, reference, tmp_path, candidate: str, logs: str):
    config = load_config({"parity": {"enabled": False}, "service_level": {"enabled": False},
                          "regression": {"enabled": False}, "traffic": {"logs": logs}})
    return validate(canary, load_reference(reference, SIGNATURE, config), config,
                    candidate=VERSIONS[candidate], baseline="stable", out_dir=tmp_path / "report")


# x in [-6, 2]: production's score 0.5 x + 2 crosses the 0.5 decision threshold at x = -3, the shifted
# candidate's at x = -5, so a quarter of the classes flip; the retrain's only in [-3.02, -3].
CASES = {"classify": (-6.0, 2.0, "classify.flip_rate"), "regress": (-4.0, 4.0, "regress.rel_change_p99")}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_recorded_classify_and_regress_traffic_rejects_a_shifted_candidate(canary, reference, tmp_path, kind):
    low, high, figure = CASES[kind]
    prefix = str(tmp_path / "logs" / MODEL)
    _record(prefix, kind, low, high)
    report = _validate(canary, reference, tmp_path, "shifted", prefix + "-*.tfrecord")
    shadow = report.check("shadow")
    assert shadow.status == "failed", report.to_markdown()
    figures = {m.key: m for m in shadow.measurements}
    assert not figures[figure].passed and figure in shadow.message
    assert figures["requests_replayed"].value == 120
    if kind == "classify":
        assert 0.15 < figures["classify.flip_rate"].value < 0.35
        assert figures["classify.score_abs_change_p50"].value == pytest.approx(1.0, abs=1e-5)
    else:
        assert figures["regress.abs_change_p50"].value == pytest.approx(1.0, abs=1e-5)
    changed = pd.read_csv(report.artifacts["shadow_most_changed"])
    assert set(changed["output"]) == {"scores" if kind == "classify" else "outputs"}
    assert set(changed["origin"]) == {"rest:examples"}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_recorded_classify_and_regress_traffic_passes_an_honest_retrain(canary, reference, tmp_path, kind):
    low, high, figure = CASES[kind]
    prefix = str(tmp_path / "logs" / MODEL)
    _record(prefix, kind, low, high)
    report = _validate(canary, reference, tmp_path, "retrain", prefix + "-*.tfrecord")
    shadow = report.check("shadow")
    assert shadow.status == "passed", report.to_markdown()
    figures = {m.key: m for m in shadow.measurements}
    assert figures[figure].passed and figures["requests_replayed"].value == 120


def test_a_candidate_without_the_classify_signature_production_answers_on_is_rejected_naming_one(
        canary, reference, tmp_path):
    prefix = str(tmp_path / "logs" / MODEL)
    _record(prefix, "classify", -1.0, 1.0, n=5)
    report = _validate(canary, reference, tmp_path, "no_classify", prefix + "-*.tfrecord")
    assert report.failed_checks == ["shadow"], report.to_markdown()
    message = report.check("shadow").message
    assert "the candidate could not answer 5 of 5 recorded requests that production answered" in message
    assert "record #1 (rest:examples classify)" in message and "classify_x_to_y" in message


@pytest.mark.parametrize("kind,signature,expected", [
    ("classify", "classify_nope", "a :classify request on signature 'classify_nope', but production "
                                  r"\(label stable\) has no such signature"),
    ("regress", "serving_default", "a :regress request on signature 'serving_default', but production "
                                   r"\(label stable\) serves that signature with method "
                                   "'tensorflow/serving/predict', not 'tensorflow/serving/regress'"),
])
def test_classify_or_regress_logs_production_cannot_answer_that_way_are_refused_naming_why(
        canary, reference, tmp_path, kind, signature, expected):
    prefix = str(tmp_path / "logs" / MODEL)
    _record(prefix, kind, -1.0, 1.0, n=3, signature=signature)
    with pytest.raises(TrafficLogError, match=expected) as refused:
        _validate(canary, reference, tmp_path, "retrain", prefix + "-*.tfrecord")
    assert refused.value.subject.startswith(prefix)  # --json names the log file


def test_a_grpc_classify_record_is_refused_before_any_replay_naming_why(tmp_path):
    """``servegate tap`` logs gRPC Classify calls; the check replays requests only as they came, and the bundled
    server answers no gRPC Classify: refused when the logs are read (the deploy's preflight reads them too)."""
    from tensorflow_serving.apis import prediction_log_pb2

    from servegate.validation.shadow_logs import load_traffic

    record = prediction_log_pb2.PredictionLog()
    record.log_metadata.model_spec.name = MODEL
    record.log_metadata.model_spec.signature_name = "classify_x_to_y"
    record.log_metadata.request_origin = plog.ORIGIN_GRPC
    record.classify_log.request.model_spec.name = MODEL
    prefix = str(tmp_path / MODEL)
    recorder = Recorder()
    recorder.submit(prefix, MODEL, record.SerializeToString)
    recorder.close()
    with pytest.raises(TrafficLogError, match="a classify request that came as 'grpc'; the shadow check replays "
                                              "classify and regress requests that came over REST"):
        load_traffic(prefix + "-*.tfrecord", MODEL, "serving_default", 100, None)


def test_a_multi_class_answer_is_compared_by_the_top_class_label_else_by_its_position():
    from servegate.validation.checks.shadow import _top_class

    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    # two versions listing their classes in another order: the same labels win
    assert list(_top_class({"scores": scores, "classes": np.array([["a", "b"], ["b", "a"]], dtype=object)})) == \
        list(_top_class({"scores": scores[:, ::-1], "classes": np.array([["b", "a"], ["a", "b"]], dtype=object)})) \
        == ["b", "b"]
    # a classify signature without classes answers empty labels: the position decides
    assert list(_top_class({"scores": scores, "classes": np.full((2, 2), "", dtype=object)})) == [1, 0]
