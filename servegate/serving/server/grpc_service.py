"""TensorFlow Serving's gRPC API: ``PredictionService`` (Predict, GetModelMetadata) and
``ModelService.GetModelStatus``, on a ``grpc.server`` with a thread pool.

This is the bulk path: tensors are decoded with ``np.frombuffer`` and encoded
as ``tensor_content`` (see ``tensor_codec``), and ``Session`` runs release
the GIL, so the pool's threads run predictions in parallel. Message sizes are
unlimited, as in TensorFlow Serving (a 100k x 64 float batch is 25 MB).
"""

from __future__ import annotations

import time
from concurrent import futures

import grpc
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from servegate.serving.server.manager import ServableManager
from servegate.serving.server.metrics import METRICS, ServingMetrics
from servegate.serving.server.request_logging import RequestLogging
from servegate.serving.server.status import CODES, StatusError
from servegate.serving.server.tensor_codec import CodecError, ndarray_to_tensor_proto, tensor_proto_to_ndarray

_STATE_NUMBER = {
    name: get_model_status_pb2.ModelVersionStatus.State.Value(name)
    for name in ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
}


def _addressed(spec) -> tuple[str, int | None, str | None]:
    """(name, version, label) of a ModelSpec; an unset version oneof means latest."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.name, spec.version.value, None
    if choice == "version_label":
        return spec.name, None, spec.version_label
    return spec.name, None, None


def run_predict_request(servable, request: predict_pb2.PredictRequest) -> tuple[str, dict]:
    """Run a ``PredictRequest`` on a loaded servable: (signature key, {output alias: array}).

    Shared by gRPC Predict and the warm-up replay, so that both decode and
    check a request the same way.
    """
    key, _ = servable.signature(request.model_spec.signature_name)
    inputs = {}
    for alias, proto in request.inputs.items():
        try:
            inputs[alias] = tensor_proto_to_ndarray(proto)
        except CodecError as exc:
            raise StatusError("INVALID_ARGUMENT", f"input '{alias}': {exc}") from None
    return servable.run(key, inputs, list(request.output_filter) or None)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ServableManager, metrics: ServingMetrics = METRICS,
                 request_log: RequestLogging | None = None) -> None:
        self._manager = manager
        self._metrics = metrics
        self._request_log = request_log

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext):
        started = time.perf_counter()
        status = "OK"
        try:
            response = self._predict(request)
            if self._request_log is not None:
                settings = self._request_log.sample(request.model_spec.name)
                if settings is not None:
                    self._request_log.log_grpc_predict(settings, request, response)
            return response
        except StatusError as exc:
            status = exc.code
            context.abort(exc.grpc_code, exc.message)
        except Exception:
            status = "UNKNOWN"  # grpc answers an unexpected exception with UNKNOWN
            raise
        finally:
            # TensorFlow Serving counts every Predict, and times the successful ones.
            self._metrics.record_request(request.model_spec.name, status, "Predict", "GRPC",
                                         time.perf_counter() - started)

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        name, version, label = _addressed(request.model_spec)
        with self._manager.servable(name, version, label) as servable:
            key, outputs = run_predict_request(servable, request)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = key
            for alias, value in outputs.items():
                try:
                    response.outputs[alias].CopyFrom(ndarray_to_tensor_proto(value))
                except CodecError as exc:
                    raise StatusError("INTERNAL", f"output '{alias}': {exc}") from None
            return response

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        try:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise StatusError(
                    "INVALID_ARGUMENT", f"Metadata field(s) {fields} not supported; only 'signature_def' is"
                )
            name, version, label = _addressed(request.model_spec)
            with self._manager.servable(name, version, label) as servable:
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                packed = any_pb2.Any()
                packed.Pack(servable.signature_def_map())
                response.metadata["signature_def"].CopyFrom(packed)
                return response
        except StatusError as exc:
            context.abort(exc.grpc_code, exc.message)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ServableManager) -> None:
        self._manager = manager

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        try:
            name, version, label = _addressed(request.model_spec)
            statuses = self._manager.status(name, version, label)
        except StatusError as exc:
            context.abort(exc.grpc_code, exc.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        for s in statuses:
            item = response.model_version_status.add()
            item.version = s.version
            item.state = _STATE_NUMBER[s.state]
            item.status.error_code = CODES[s.error_code]
            item.status.error_message = s.error_message
        return response

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "HandleReloadConfigRequest is not supported by the bundled server")


def build_grpc_server(manager: ServableManager, address: str, max_threads: int,
                      metrics: ServingMetrics = METRICS,
                      request_log: RequestLogging | None = None) -> tuple[grpc.Server, int]:
    """A gRPC server bound to ``address``, not started yet; returns (server, bound port).

    Raises ``RuntimeError`` (from grpc) when the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
                 ("grpc.so_reuseport", 0),
                 # Bigger HTTP/2 flow-control windows: multi-MB tensors otherwise stall on window updates.
                 ("grpc.http2.lookahead_bytes", 16 << 20)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(manager, metrics, request_log), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    port = server.add_insecure_port(address)
    return server, port
