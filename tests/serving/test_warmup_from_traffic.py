"""``warmup.source: traffic``: the warm-up file built from recorded production requests (gRPC and REST forms),
replayed by the bundled server before the version becomes AVAILABLE."""

from __future__ import annotations

import shutil

import numpy as np

from servegate.serving.warmup import warmup_file, write_warmup_from_requests
from servegate.traffic import prediction_log as plog
from servegate.traffic.recorder import Recorder
from servegate.validation.shadow_logs import load_traffic


def _record(prefix: str, n: int) -> None:
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto

    recorder = Recorder()
    rng = np.random.default_rng(0)
    for i in range(n):
        batch = 1 + i % 2  # two request shapes
        x = rng.normal(size=(batch, 4)).astype("float32")
        y = np.zeros((batch, 1), "float32")
        origin = plog.ORIGINS[i % 3]
        served = plog.Served("tiny", 3, "serving_default", origin, 1.0)
        if origin == plog.ORIGIN_GRPC:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "tiny"
            request.model_spec.version_label = "stable"  # addressed then; the warm-up must not keep it
            request.inputs["features"].CopyFrom(ndarray_to_tensor_proto(x))
            response = predict_pb2.PredictResponse()
            recorder.submit(prefix, "tiny", lambda s=served, q=request, r=response: plog.grpc_predict_log(s, q, r))
        else:
            recorder.submit(prefix, "tiny", lambda s=served, x=x, y=y: plog.rest_predict_log(
                s, plog.Addressed(version=3), {"features": x}, {"output_0": y}))
    recorder.close()


def test_recorded_requests_become_the_warm_up_file_and_are_replayed_at_load(tiny_savedmodel, tmp_path,
                                                                            bundled_server):
    prefix = str(tmp_path / "traffic" / "tiny")
    _record(prefix, 9)
    traffic = load_traffic(prefix + "-*.tfrecord", "tiny", "serving_default", max_requests=6, max_age_hours=None)
    assert len(traffic.requests) == 6  # the newest six
    base = tmp_path / "tiny"
    shutil.copytree(tiny_savedmodel, base / "1")
    path = write_warmup_from_requests(base / "1", [r.record.predict_log.request for r in traffic.requests],
                                      model_name="tiny")
    assert path == warmup_file(base / "1")
    server = bundled_server(["--model_name=tiny", f"--model_base_path={base}"], wait_for="tiny")
    logs = server.logs()
    assert "Number of warmup records read: 2." in logs  # one per request shape of the six
    assert logs.index("Number of warmup records read: 2.") < logs.index(
        "Successfully loaded servable version {name: tiny version: 1}")
    assert "Traceback" not in logs
