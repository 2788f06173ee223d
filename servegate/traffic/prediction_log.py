"""Build TensorFlow Serving ``PredictionLog`` records from one request and its answer.

Every record carries ``log_metadata``: the model spec as served (name, the
version that answered, the signature key), the sampling config, the
``serve`` tag and the time. ``request_origin`` says in which form the request
arrived, so a replay can send it the same way:

- ``grpc``: a gRPC ``Predict`` (the request proto is logged as sent);
- ``rest:instances`` / ``rest:inputs``: a REST ``:predict`` in row or columnar
  form (the decoded tensors are logged as a ``PredictRequest``);
- ``rest:examples``: a REST ``:classify`` or ``:regress`` (the examples, each
  merged with the body's ``context``, as a ``ClassificationRequest`` or
  ``RegressionRequest``).

Only answered requests are logged: a request the server refused has no
answer to compare a candidate's with.

The records are built on the request thread (the bundled server) or the
log's writer thread (the tap), each holding the GIL that every request
thread needs, so the builders keep their Python work small:
the metadata is serialized once per model, version, signature, origin, rate
and second, and the model specs once per model, version and signature
(cached); the request and response are serialized on their own and framed
into the ``PredictionLog`` as protobuf's wire format frames a
length-delimited field, rather than copied into a new message first; and a
REST ``:predict``'s tensors are written on the wire directly (``wire``), never
as messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
from tensorflow_serving.apis import (
    input_pb2,
    logging_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
)
from tensorflow_serving.config import logging_config_pb2

from servegate.traffic import wire

ORIGIN_GRPC = "grpc"
ORIGIN_ROWS = "rest:instances"
ORIGIN_COLUMNS = "rest:inputs"
ORIGIN_EXAMPLES = "rest:examples"
ORIGINS = (ORIGIN_GRPC, ORIGIN_ROWS, ORIGIN_COLUMNS, ORIGIN_EXAMPLES)


@dataclass(frozen=True)
class Served:
    """Who answered: the model, its version, the signature key; how the request came, at what sampling rate."""

    model_name: str
    version: int
    signature_name: str
    origin: str
    sampling_rate: float
    timestamp_secs: int | None = None  # when the request was answered; None: now


@dataclass(frozen=True)
class Addressed:
    """What the client asked for besides the name: a version, a label, or neither (latest)."""

    version: int | None = None
    label: str | None = None
    signature_name: str = ""


def metadata(served: Served) -> logging_pb2.LogMetadata:
    meta = logging_pb2.LogMetadata(
        timestamp_secs=int(time.time()) if served.timestamp_secs is None else served.timestamp_secs,
        request_origin=served.origin,
        saved_model_tags=["serve"],
        sampling_config=logging_config_pb2.SamplingConfig(sampling_rate=served.sampling_rate),
    )
    meta.model_spec.name = served.model_name
    meta.model_spec.version.value = served.version
    meta.model_spec.signature_name = served.signature_name
    return meta


#: PredictionLog's field numbers (tensorflow_serving/apis/prediction_log.proto); each *Log holds its
#: request as field 1 and its response as field 2.
_LOG_METADATA, _LOG_FIELD = 1, {"classify_log": 2, "regress_log": 3, "predict_log": 6}


@lru_cache(maxsize=256)
def _metadata_field(*fields: Any) -> bytes:
    """``log_metadata``, framed as the record's field. Keyed by ``Served``'s fields as a tuple: hashed and
    compared in C, not by the dataclass's Python code."""
    return wire.field(_LOG_METADATA, metadata(Served(*fields)).SerializeToString())


def framed_log(served: Served, kind: str, request: bytes, response: bytes) -> bytes:
    """A serialized PredictionLog of ``kind`` (``predict_log``, ``classify_log``, ``regress_log``) from the
    serialized request and response, without building the message."""
    stamp = int(time.time()) if served.timestamp_secs is None else served.timestamp_secs
    return (_metadata_field(served.model_name, served.version, served.signature_name, served.origin,
                            served.sampling_rate, stamp)
            + wire.field(_LOG_FIELD[kind], wire.field(1, request) + wire.field(2, response)))


def _request_spec(spec: model_pb2.ModelSpec, name: str, addressed: Addressed) -> None:
    spec.name = name
    spec.signature_name = addressed.signature_name
    if addressed.version is not None:
        spec.version.value = addressed.version
    elif addressed.label is not None:
        spec.version_label = addressed.label


def _response_spec(spec: model_pb2.ModelSpec, served: Served) -> None:
    spec.name = served.model_name
    spec.version.value = served.version
    spec.signature_name = served.signature_name


def grpc_predict_log(served: Served, request: predict_pb2.PredictRequest,
                     response: predict_pb2.PredictResponse) -> bytes:
    """A gRPC Predict, logged as it was sent and answered."""
    return framed_log(served, "predict_log", request.SerializeToString(), response.SerializeToString())


@lru_cache(maxsize=256)
def _request_spec_field(name: str, version: int | None, label: str | None, signature_name: str) -> bytes:
    """A PredictRequest's ``model_spec``, framed as its field."""
    spec = model_pb2.ModelSpec()
    _request_spec(spec, name, Addressed(version, label, signature_name))
    return wire.field(wire.REQUEST_SPEC, spec.SerializeToString())


@lru_cache(maxsize=256)
def _response_spec_field(name: str, version: int, signature_name: str) -> bytes:
    """A PredictResponse's ``model_spec``, framed as its field."""
    spec = model_pb2.ModelSpec()
    _response_spec(spec, Served(name, version, signature_name, "", 0.0))
    return wire.field(wire.RESPONSE_SPEC, spec.SerializeToString())


def rest_predict_log(served: Served, addressed: Addressed, inputs: Mapping[str, np.ndarray],
                     outputs: Mapping[str, np.ndarray]) -> bytes:
    """A REST ``:predict`` (row or columnar), its decoded tensors as a PredictRequest/Response.

    Written on the wire directly (``wire``): the same message as filling a PredictRequest and a
    PredictResponse with ``tensor_codec.fill_tensor_proto``, at a fraction of the writer's time.
    """
    request = (_request_spec_field(served.model_name, addressed.version, addressed.label, addressed.signature_name)
               + wire.tensor_map(wire.REQUEST_INPUTS, inputs))
    response = (wire.tensor_map(wire.RESPONSE_OUTPUTS, outputs)
                + _response_spec_field(served.model_name, served.version, served.signature_name))
    return framed_log(served, "predict_log", request, response)


def _example_input(serialized: list[bytes]) -> input_pb2.Input:
    from tensorflow.core.example import example_pb2

    examples = [example_pb2.Example.FromString(raw) for raw in serialized]
    return input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples))


def rest_classify_log(served: Served, addressed: Addressed, serialized: list[bytes], body: Mapping[str, Any]) -> bytes:
    """A REST ``:classify``: the examples and the ``results`` it answered."""
    record = prediction_log_pb2.PredictionLog(log_metadata=metadata(served))
    request = record.classify_log.request
    _request_spec(request.model_spec, served.model_name, addressed)
    request.input.CopyFrom(_example_input(serialized))
    response = record.classify_log.response
    _response_spec(response.model_spec, served)
    for row in body["results"]:
        classifications = response.result.classifications.add()
        for item in row:
            classifications.classes.add(label=str(item[0]), score=float(item[1]) if len(item) > 1 else 0.0)
    return record.SerializeToString()


def rest_regress_log(served: Served, addressed: Addressed, serialized: list[bytes], body: Mapping[str, Any]) -> bytes:
    """A REST ``:regress``: the examples and the ``results`` it answered."""
    record = prediction_log_pb2.PredictionLog(log_metadata=metadata(served))
    request = record.regress_log.request
    _request_spec(request.model_spec, served.model_name, addressed)
    request.input.CopyFrom(_example_input(serialized))
    response = record.regress_log.response
    _response_spec(response.model_spec, served)
    for value in body["results"]:
        response.result.regressions.add(value=float(value))
    return record.SerializeToString()


def parse(raw: bytes) -> prediction_log_pb2.PredictionLog:
    return prediction_log_pb2.PredictionLog.FromString(raw)

