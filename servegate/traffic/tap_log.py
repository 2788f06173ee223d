"""What ``servegate tap`` records: forwarded requests and their answers as ``PredictionLog`` records.

The proxy hands over raw bytes (the request as the client sent it, the answer
as TensorFlow Serving gave it); everything else happens in the recorder's
writer thread, so recording adds no work to a request beyond a coin toss and
a queue put. A REST ``:predict`` body is JSON without types, so the writer
reads the model's signature from TensorFlow Serving's metadata to decode it;
the REST answer does not say which version answered, so the writer takes the
version from the same metadata (the version addressed, else the one serving
then, cached for a few seconds). Any failure is logged and counted as a drop;
the client already has its answer.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from servegate.serving.server.metrics import ServingMetrics
from servegate.traffic import prediction_log as plog
from servegate.traffic.recorder import Recorder, RotationLimits

log = logging.getLogger("servegate.traffic")

METADATA_TTL_S = 5.0
_GRPC_SERVICE = "/tensorflow.serving.PredictionService/"


@dataclass(frozen=True)
class RestCall:
    """One answered REST prediction request, as forwarded."""

    verb: str
    model_name: str
    version: int | None
    label: str | None
    body: bytes
    answer: bytes


class Signatures:
    """Model metadata read from the upstream REST API, cached per address for a few seconds."""

    def __init__(self, rest_url: str | None) -> None:
        self._rest_url = rest_url.rstrip("/") if rest_url else None
        self._cache: dict[tuple, tuple[float, int, get_model_metadata_pb2.SignatureDefMap]] = {}
        self._client = httpx.Client(timeout=10.0) if rest_url else None

    def get(self, name: str, version: int | None, label: str | None) -> tuple[int, Any]:
        """(served version, SignatureDefMap) for a request addressed this way."""
        key = (name, version, label)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < METADATA_TTL_S:
            return cached[1], cached[2]
        if self._client is None:
            raise RuntimeError("REST traffic needs the upstream REST URL to read model metadata")
        where = f"/versions/{version}" if version is not None else (f"/labels/{label}" if label else "")
        response = self._client.get(f"{self._rest_url}/v1/models/{name}{where}/metadata")
        response.raise_for_status()
        body = response.json()
        signatures = json_format.ParseDict(body["metadata"]["signature_def"],
                                           get_model_metadata_pb2.SignatureDefMap(), ignore_unknown_fields=True)
        served = int(body["model_spec"]["version"])
        self._cache[key] = (time.monotonic(), served, signatures)
        return served, signatures


def _outputs_from_answer(answer: dict, sig) -> dict[str, np.ndarray]:
    from servegate.serving.server.tensor_codec import json_to_ndarray

    names = sorted(sig.outputs)
    if "predictions" in answer:
        rows = answer["predictions"]
        if len(names) == 1:
            return {names[0]: json_to_ndarray(rows, sig.outputs[names[0]].dtype)}
        return {n: json_to_ndarray([row[n] for row in rows], sig.outputs[n].dtype) for n in names}
    outputs = answer["outputs"]
    if not isinstance(outputs, dict) or len(names) == 1 and names[0] not in outputs:
        outputs = {names[0]: outputs}
    return {n: json_to_ndarray(v, sig.outputs[n].dtype) for n, v in outputs.items()}


class TapLog:
    """Sampling, the recorder, and the record builders of one tap."""

    def __init__(self, log_dir: Path, sampling_rate: float, upstream_rest: str | None, *,
                 queue_size: int = 1024, limits: RotationLimits = RotationLimits()) -> None:
        self.log_dir = Path(log_dir)
        self.sampling_rate = sampling_rate
        self.metrics = ServingMetrics()
        self._signatures = Signatures(upstream_rest)
        self._recorder = Recorder(queue_size, limits, on_drop=self.metrics.record_log_dropped,
                                  on_write=self.metrics.record_log_written)

    def sampled(self) -> bool:
        return self.sampling_rate >= 1.0 or random.random() < self.sampling_rate

    def _prefix(self, model_name: str) -> str:
        return str(self.log_dir / model_name)

    def rest(self, call: RestCall) -> None:
        """Queue an answered REST request (never raises)."""
        try:
            self._recorder.submit(self._prefix(call.model_name), call.model_name, lambda: self._rest_record(call))
        except Exception:
            log.exception("tap: could not queue a REST request of model %s", call.model_name)
            self.metrics.record_log_dropped(call.model_name, "error")

    def grpc(self, method: str, request: bytes, answer: bytes) -> None:
        """Queue an answered gRPC call (Predict, Classify, Regress; others are not prediction logs)."""
        verb = method.removeprefix(_GRPC_SERVICE)
        if not method.startswith(_GRPC_SERVICE) or verb not in ("Predict", "Classify", "Regress"):
            return
        try:
            name = _GRPC_TYPES[verb][0].FromString(request).model_spec.name
            self._recorder.submit(self._prefix(name), name, lambda: self._grpc_record(verb, request, answer))
        except Exception:
            log.exception("tap: could not queue a gRPC %s", verb)
            self.metrics.record_log_dropped("", "error")

    def _rest_record(self, call: RestCall) -> bytes:
        from servegate.serving.server import json_api

        body, answer = json.loads(call.body), json.loads(call.answer)
        version, signatures = self._signatures.get(call.model_name, call.version, call.label)
        signature = body.get("signature_name") or "serving_default"
        addressed = plog.Addressed(call.version, call.label, body.get("signature_name", ""))
        if call.verb == "predict":
            sig = signatures.signature_def[signature]
            form, inputs = json_api.decode_predict_inputs(body, sig)
            origin = plog.ORIGIN_ROWS if form == "instances" else plog.ORIGIN_COLUMNS
            served = plog.Served(call.model_name, version, signature, origin, self.sampling_rate)
            return plog.rest_predict_log(served, addressed, inputs, _outputs_from_answer(answer, sig))
        served = plog.Served(call.model_name, version, signature, plog.ORIGIN_EXAMPLES, self.sampling_rate)
        examples = json_api.serialized_examples(body)
        build = plog.rest_classify_log if call.verb == "classify" else plog.rest_regress_log
        return build(served, addressed, examples, answer)

    def _grpc_record(self, verb: str, request: bytes, answer: bytes) -> bytes:
        request_type, response_type, field = _GRPC_TYPES[verb]
        response = response_type.FromString(answer)
        spec = response.model_spec
        served = plog.Served(spec.name, spec.version.value, spec.signature_name, plog.ORIGIN_GRPC, self.sampling_rate)
        if verb == "Predict":
            return plog.grpc_predict_log(served, request_type.FromString(request), response)
        record = prediction_log_pb2.PredictionLog(log_metadata=plog.metadata(served))
        getattr(record, field).request.ParseFromString(request)
        getattr(record, field).response.CopyFrom(response)
        return record.SerializeToString()

    def close(self) -> None:
        self._recorder.close()


_GRPC_TYPES = {
    "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse, "predict_log"),
    "Classify": (classification_pb2.ClassificationRequest, classification_pb2.ClassificationResponse,
                 "classify_log"),
    "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse, "regress_log"),
}
