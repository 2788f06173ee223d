"""A client of TensorFlow Serving's APIs: predict, model status, model metadata.

Two transports, one interface:

- **gRPC** (``PredictionService.Predict`` / ``GetModelMetadata`` and
  ``ModelService.GetModelStatus``), used for bulk traffic: tensors travel as
  raw ``tensor_content`` bytes, so a batch costs one ``tobytes()`` and one
  ``frombuffer()`` instead of a JSON encode and decode of every number;
- **REST** (``/v1/models/<name>[/versions/<v>|/labels/<l>]``, ``:predict`` in
  the columnar ``inputs`` form, ``/metadata``), used when no gRPC target is
  known, or when asked for.

A request addresses the model by name and optionally a version number *or* a
version label (``canary``/``stable``), as TensorFlow Serving does.
:meth:`ServingClient.predict_many` sends many batches with a bounded thread
pool and records each request's latency; failures are returned per request,
never raised, because the error rate is itself a measured figure.

Life cycle: create, use from any number of threads, :meth:`close` (or use as a
context manager). The gRPC channel and the HTTP session are shared by all
threads; both are thread-safe.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests

from servegate.errors import ServingError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# DataType enum values from tensorflow/core/framework/types.proto.
_DT = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "string": 7,
       "int64": 9, "bool": 10, "uint16": 17, "float16": 19, "uint32": 22, "uint64": 23}
_NP_OF_DT = {v: k for k, v in _DT.items()}
# TensorProto's typed repeated fields, used when a server does not send tensor_content.
_VAL_FIELD = {1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 5: "int_val", 6: "int_val",
              7: "string_val", 9: "int64_val", 10: "bool_val", 17: "int_val", 19: "half_val",
              22: "uint32_val", 23: "uint64_val"}
GRPC_MAX_MESSAGE_BYTES = 512 << 20


class PredictError(ServingError):
    """A prediction request failed; the message has the server's own words."""


@dataclass
class PredictResult:
    """One request's answer: output tensors by name, and how long the round trip took."""

    outputs: dict[str, np.ndarray]
    latency_s: float
    model_version: int | None = None


@dataclass
class RequestOutcome:
    """One request of :meth:`ServingClient.predict_many`: its index, result or error, latency."""

    index: int
    rows: int
    latency_s: float
    result: PredictResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _address(version: int | None, label: str | None) -> tuple[int | None, str | None]:
    if version is not None and label is not None:
        raise ValueError("address a model by version or by label, not both")
    return (int(version) if version is not None else None), label


# ----------------------------------------------------------- tensor encoding
def _fill_tensor_proto(proto, array: np.ndarray) -> None:
    """Fill a TensorProto in place (no intermediate message to copy: one bytes copy per request)."""
    arr = np.asarray(array)
    if arr.dtype.kind in "OUS":
        dt = _DT["string"]
    else:
        dt = _DT.get(arr.dtype.name)
        if dt is None:
            raise PredictError(f"cannot send an array of dtype {arr.dtype} over gRPC")
    proto.dtype = dt
    for d in arr.shape:
        proto.tensor_shape.dim.add(size=d)
    if dt == _DT["string"]:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel())
    else:
        proto.tensor_content = np.ascontiguousarray(arr).tobytes()


def to_tensor_proto(array: np.ndarray):
    """A numpy array as a TensorProto with ``tensor_content`` (strings use ``string_val``)."""
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto()
    _fill_tensor_proto(proto, array)
    return proto


def from_tensor_proto(proto) -> np.ndarray:
    """A TensorProto as a numpy array, from ``tensor_content`` or the typed value fields."""
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    name = _NP_OF_DT.get(proto.dtype)
    if name is None:
        raise PredictError(f"server answered a tensor of unsupported dtype enum {proto.dtype}")
    if name == "string":
        return np.array(list(proto.string_val), dtype=object).reshape(shape)
    dtype = np.dtype(name)
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    values = getattr(proto, _VAL_FIELD[proto.dtype])
    if name == "float16":
        arr = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(values, dtype=dtype)
    count = int(np.prod(shape)) if shape else 1
    if arr.size == 1 and count != 1:  # a splat: one value stands for all
        arr = np.full(count, arr[0], dtype=dtype)
    return arr.reshape(shape)


# ------------------------------------------------------------------ the client
class ServingClient:
    """Predict, status and metadata for one model on one TensorFlow Serving endpoint."""

    def __init__(self, model_name: str, *, rest_url: str | None = None, grpc_target: str | None = None,
                 transport: str = "auto", timeout_s: float = 30.0, signature_name: str = "serving_default"):
        if not rest_url and not grpc_target:
            raise ServingError(f"client for model {model_name!r}: give a rest_url or a grpc_target")
        if transport not in ("auto", "grpc", "rest"):
            raise ServingError(f"client transport {transport!r}: expected auto, grpc or rest")
        if transport == "grpc" and not grpc_target:
            raise ServingError(f"client for model {model_name!r}: transport 'grpc' asked for but no grpc_target")
        if transport == "rest" and not rest_url:
            raise ServingError(f"client for model {model_name!r}: transport 'rest' asked for but no rest_url")
        self.model_name = model_name
        self.rest_url = rest_url.rstrip("/") if rest_url else None
        self.grpc_target = grpc_target
        self.transport = "grpc" if (transport == "grpc" or (transport == "auto" and grpc_target)) else "rest"
        self.timeout_s = timeout_s
        self.signature_name = signature_name
        self._lock = threading.Lock()
        self._channel = None
        self._stub = None
        self._session: requests.Session | None = None

    @classmethod
    def for_runner(cls, runner: Any, model_name: str | None = None, **kwargs: Any) -> "ServingClient":
        """A client of a started runner (anything with ``rest_url``/``grpc_target``, and a ``spec``)."""
        name = model_name or getattr(getattr(runner, "spec", None), "model_name", None)
        if not name:
            raise ServingError("client for a runner: pass model_name= (the runner has no spec.model_name)")
        return cls(name, rest_url=getattr(runner, "rest_url", None), grpc_target=getattr(runner, "grpc_target", None),
                   **kwargs)

    # -------------------------------------------------------------- plumbing
    def _grpc(self):
        with self._lock:
            if self._stub is None:
                import grpc
                from tensorflow_serving.apis import prediction_service_pb2_grpc

                self._channel = grpc.insecure_channel(self.grpc_target, options=[
                    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
                    # Bulk validation sends MB-sized tensors: a larger HTTP/2 window keeps
                    # flow control from stalling them (the bundled server sets the same).
                    ("grpc.http2.lookahead_bytes", 16 << 20)])
                self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            return self._stub

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = requests.Session()
                # One pooled connection per concurrent worker; the default pool is 10.
                adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
                self._session.mount("http://", adapter)
            return self._session

    def _model_url(self, version: int | None, label: str | None) -> str:
        if not self.rest_url:
            raise ServingError(f"model {self.model_name!r}: no REST endpoint known")
        url = f"{self.rest_url}/v1/models/{self.model_name}"
        if version is not None:
            url += f"/versions/{version}"
        elif label is not None:
            url += f"/labels/{label}"
        return url

    def _model_spec(self, spec, version: int | None, label: str | None) -> None:
        spec.name = self.model_name
        spec.signature_name = self.signature_name
        if version is not None:
            spec.version.value = version
        elif label is not None:
            spec.version_label = label

    def _rest_json(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._http().request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise PredictError(f"{method} {url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        if response.status_code != 200 or (isinstance(body, dict) and "error" in body):
            message = body.get("error") if isinstance(body, dict) else body
            raise PredictError(f"{method} {url}: HTTP {response.status_code}: {message}")
        return body

    # ------------------------------------------------------------ the API
    def status(self, version: int | None = None, label: str | None = None) -> list[dict[str, Any]]:
        """``model_version_status`` entries (``version``, ``state``, ``status``) from the REST API."""
        version, label = _address(version, label)
        if self.rest_url:
            return self._rest_json("GET", self._model_url(version, label)).get("model_version_status", [])
        import grpc
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        self._grpc()
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, version, label)
        request.model_spec.ClearField("signature_name")
        try:
            reply = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise PredictError(f"GetModelStatus {self.model_name} at {self.grpc_target}: {exc.code().name}: "
                               f"{exc.details()}") from None
        return json_format.MessageToDict(reply, preserving_proto_field_name=True).get("model_version_status", [])

    def metadata(self, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """The model's metadata in TF Serving's REST JSON form (``metadata.signature_def``)."""
        version, label = _address(version, label)
        if self.rest_url and self.transport == "rest":
            return self._rest_json("GET", self._model_url(version, label) + "/metadata")
        import grpc
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec, version, label)
        request.model_spec.ClearField("signature_name")
        try:
            reply = self._grpc().GetModelMetadata(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise PredictError(f"GetModelMetadata {self.model_name} at {self.grpc_target}: {exc.code().name}: "
                               f"{exc.details()}") from None
        any_msg = reply.metadata["signature_def"]
        sigs = get_model_metadata_pb2.SignatureDefMap()
        any_msg.Unpack(sigs)
        return {"model_spec": json_format.MessageToDict(reply.model_spec, preserving_proto_field_name=True),
                "metadata": {"signature_def": json_format.MessageToDict(sigs, preserving_proto_field_name=True)}}

    def predict(self, inputs: Mapping[str, np.ndarray], *, version: int | None = None, label: str | None = None,
                output_filter: Iterable[str] | None = None) -> PredictResult:
        """One Predict request; raises :class:`PredictError` with the server's message."""
        version, label = _address(version, label)
        if self.transport == "grpc":
            return self._predict_grpc(inputs, version, label, output_filter)
        return self._predict_rest(inputs, version, label, output_filter)

    def _predict_grpc(self, inputs, version, label, output_filter) -> PredictResult:
        import grpc
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, version, label)
        for name, value in inputs.items():
            _fill_tensor_proto(request.inputs[name], value)
        if output_filter:
            request.output_filter.extend(output_filter)
        stub = self._grpc()
        started = time.perf_counter()
        try:
            reply = stub.Predict(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise PredictError(f"Predict {self.model_name} at {self.grpc_target}: {exc.code().name}: "
                               f"{exc.details()}") from None
        latency = time.perf_counter() - started
        outputs = {name: from_tensor_proto(t) for name, t in reply.outputs.items()}
        got = reply.model_spec.version.value if reply.model_spec.HasField("version") else None
        return PredictResult(outputs, latency, got)

    def _predict_rest(self, inputs, version, label, output_filter) -> PredictResult:
        body: dict[str, Any] = {"signature_name": self.signature_name,
                                "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}}
        if output_filter:
            body["output_filter"] = list(output_filter)
        url = self._model_url(version, label) + ":predict"
        started = time.perf_counter()
        reply = self._rest_json("POST", url, json=body)
        latency = time.perf_counter() - started
        outputs = reply.get("outputs")
        if outputs is None:
            raise PredictError(f"POST {url}: answer has no 'outputs' (keys: {sorted(reply)})")
        if not isinstance(outputs, dict):  # a single output is sent bare, TF Serving's columnar form
            outputs = {"output": outputs}
        return PredictResult({k: np.asarray(v) for k, v in outputs.items()}, latency, version)

    def predict_many(self, batches: Iterable[Mapping[str, np.ndarray]], *, concurrency: int = 4,
                     version: int | None = None, label: str | None = None,
                     output_filter: Iterable[str] | None = None,
                     deadline_s: float | None = None) -> Iterator[RequestOutcome]:
        """Send every batch with at most ``concurrency`` requests in flight; yield outcomes as they finish.

        Outcomes come back in completion order (use ``index`` to place them).
        Batches are pulled lazily, so a large reference never sits in memory:
        at most ``2 * concurrency`` batches are held at once. A failed request
        is an outcome with ``error`` set. When ``deadline_s`` passes, batches
        not yet sent are reported as failed with a deadline error.
        """
        stop_at = None if deadline_s is None else time.monotonic() + deadline_s
        filters = list(output_filter) if output_filter else None

        def one(index: int, batch: Mapping[str, np.ndarray]) -> RequestOutcome:
            rows = len(next(iter(batch.values()))) if batch else 0
            started = time.perf_counter()
            try:
                result = self.predict(batch, version=version, label=label, output_filter=filters)
                return RequestOutcome(index, rows, result.latency_s, result=result)
            except PredictError as exc:
                return RequestOutcome(index, rows, time.perf_counter() - started, error=str(exc))

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="servegate-predict") as pool:
            in_flight: set[Future] = set()
            for index, batch in enumerate(batches):
                if stop_at is not None and time.monotonic() >= stop_at:
                    rows = len(next(iter(batch.values()))) if batch else 0
                    yield RequestOutcome(index, rows, 0.0, error=f"validation deadline of {deadline_s:g} s passed "
                                                                   "before this batch was sent")
                    continue
                in_flight.add(pool.submit(one, index, batch))
                if len(in_flight) >= 2 * concurrency:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            for future in in_flight:
                yield future.result()

    def predict_all(self, inputs: Mapping[str, np.ndarray], *, batch_size: int = 1024, concurrency: int = 4,
                    version: int | None = None, label: str | None = None) -> tuple[dict[str, np.ndarray], list[RequestOutcome]]:
        """Split ``inputs`` into batches of ``batch_size`` rows, send them concurrently, reassemble in row order.

        Returns the outputs (one array per output name, rows in input order)
        and every request's outcome. Raises :class:`PredictError` naming the
        first failed batch: use :meth:`predict_many` to keep going past failures.
        """
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        n_rows = len(next(iter(arrays.values()))) if arrays else 0
        starts = list(range(0, n_rows, batch_size))
        batches = ({k: v[s:s + batch_size] for k, v in arrays.items()} for s in starts)
        outcomes = sorted(self.predict_many(batches, concurrency=concurrency, version=version, label=label),
                          key=lambda o: o.index)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            first = failed[0]
            raise PredictError(f"{len(failed)} of {len(outcomes)} batches failed; rows {starts[first.index]}.."
                               f"{starts[first.index] + first.rows - 1}: {first.error}")
        names = outcomes[0].result.outputs.keys() if outcomes else []
        outputs = {name: np.concatenate([o.result.outputs[name] for o in outcomes]) for name in names}
        return outputs, outcomes

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = self._stub = None
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
