"""Replay recorded production requests to the candidate and to production, in the form each arrived.

A gRPC Predict goes back as the same ``PredictRequest`` (only the model
spec's version or label changes); a REST ``:predict`` is rebuilt from its
logged tensors in the form the client used (``instances`` rows or ``inputs``
columns), so a change that breaks real clients' payloads fails here even when
the reference file was adapted to the new signature. A REST ``:classify`` or
``:regress`` goes back as the same JSON examples on the same signature
(``validation/shadow_examples.py``). Both versions answer in
the same canary, one request after the other, so they meet the same machine.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servegate.serving.client import ServingClient
from servegate.validation.send import address
from servegate.validation.shadow_examples import MAIN_OUTPUT, answer_arrays, check_replayable, examples_body, request_of
from servegate.validation.shadow_logs import Recorded, RecordedTraffic


@dataclass
class Answer:
    outputs: dict[str, np.ndarray] | None = None
    error: str | None = None


@dataclass
class Replayed:
    request: Recorded
    candidate: Answer
    production: Answer


@dataclass
class ReplayResult:
    traffic: RecordedTraffic
    replayed: list[Replayed] = field(default_factory=list)
    not_sent: int = 0       # past the validation deadline
    seconds: float = 0.0


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind in "SU":
        flat = [{"b64": base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()}
                for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def rest_body(request, origin: str) -> dict:
    """The REST ``:predict`` body a logged PredictRequest came as (rows or columns)."""
    from servegate.serving.server.tensor_codec import tensor_proto_to_ndarray

    inputs = {name: tensor_proto_to_ndarray(proto) for name, proto in request.inputs.items()}
    body: dict[str, Any] = {}
    if request.model_spec.signature_name:
        body["signature_name"] = request.model_spec.signature_name
    if origin == "rest:instances":
        if len(inputs) == 1:
            body["instances"] = _json_value(next(iter(inputs.values())))
        else:
            rows = len(next(iter(inputs.values())))
            body["instances"] = [{n: _json_value(a[i]) for n, a in inputs.items()} for i in range(rows)]
    else:
        body["inputs"] = {n: _json_value(a) for n, a in inputs.items()}
    return body


def _rest_outputs(answer: dict, output_names: list[str]) -> dict[str, np.ndarray]:
    if "predictions" in answer:
        rows = answer["predictions"]
        if len(output_names) == 1 or not (rows and isinstance(rows[0], dict)):
            return {output_names[0]: np.asarray(rows)}
        return {n: np.asarray([row[n] for row in rows]) for n in output_names if n in rows[0]}
    outputs = answer["outputs"]
    if not isinstance(outputs, dict) or (len(output_names) == 1 and output_names[0] not in outputs):
        return {output_names[0]: np.asarray(outputs)}
    return {n: np.asarray(v) for n, v in outputs.items()}


def _post(client: ServingClient, who: dict, verb: str, body: dict) -> Answer | dict:
    """POST ``body`` to one version's ``:verb``; its JSON answer, or the Answer naming why there is none."""
    url = f"{client.rest_url}/v1/models/{client.model_name}"
    url += f"/versions/{who['version']}" if "version" in who else f"/labels/{who['label']}"
    try:
        response = client._http().post(f"{url}:{verb}", json=body, timeout=client.timeout_s)
    except Exception as exc:  # a dropped connection is the version's failure to answer, not a crash
        return Answer(error=f"REST request failed: {exc}")
    if response.status_code != 200:
        return Answer(error=f"HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def _send_rest(client: ServingClient, item: Recorded, who: dict, output_names: list[str]) -> Answer:
    answer = _post(client, who, "predict", rest_body(item.record.predict_log.request, item.origin))
    return answer if isinstance(answer, Answer) else Answer(_rest_outputs(answer, output_names))


def _send_examples(client: ServingClient, item: Recorded, who: dict) -> Answer:
    answer = _post(client, who, item.kind, examples_body(request_of(item)))
    return answer if isinstance(answer, Answer) else Answer(answer_arrays(item.kind, answer))


def _send_grpc(client: ServingClient, item: Recorded, who: dict) -> Answer:
    import grpc
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import tensor_proto_to_ndarray

    request = predict_pb2.PredictRequest()
    request.CopyFrom(item.record.predict_log.request)
    request.model_spec.name = client.model_name
    if "version" in who:
        request.model_spec.version.value = who["version"]
    else:
        request.model_spec.version_label = who["label"]
    try:
        reply = client._grpc().Predict(request, timeout=client.timeout_s)
    except grpc.RpcError as exc:
        return Answer(error=f"gRPC {exc.code().name}: {exc.details()}")
    return Answer({name: tensor_proto_to_ndarray(t) for name, t in reply.outputs.items()})


def _send(client: ServingClient, item: Recorded, who: dict, output_names: list[str]) -> Answer:
    if item.kind != "predict":
        return _send_examples(client, item, who)
    if item.origin == "grpc" and client.grpc_target:
        return _send_grpc(client, item, who)
    if client.rest_url:
        return _send_rest(client, item, who, output_names)
    return _send_grpc(client, item, who)  # a gRPC-only canary: REST-recorded tensors go as a PredictRequest


def replay(client: ServingClient, traffic: RecordedTraffic, candidate: str | int, production: str | int,
           output_names: list[str], deadline_s: float, concurrency: int = 4) -> ReplayResult:
    """Send every recorded request to both versions; stops sending at the deadline (counted in ``not_sent``)."""
    cand, prod = address(candidate), address(production)
    check_replayable(client, traffic, prod)
    started = time.perf_counter()
    result = ReplayResult(traffic)

    def both(item: Recorded) -> Replayed | None:
        if time.perf_counter() - started > deadline_s:
            return None
        return Replayed(item, _send(client, item, cand, output_names), _send(client, item, prod, output_names))

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="shadow") as pool:
        for done in pool.map(both, traffic.requests):
            if done is None:
                result.not_sent += 1
            else:
                result.replayed.append(done)
    result.seconds = time.perf_counter() - started
    return result


def write_most_changed(result: ReplayResult, output: str, path, limit: int = 20) -> int:
    """A CSV of the recorded requests whose answer changed most (production's beside the candidate's):
    ``output`` of the predict requests, the scores of the classify ones, the values of the regress ones."""
    import csv

    rows = []
    for r in result.replayed:
        if r.candidate.error or r.production.error:
            continue
        name = MAIN_OUTPUT.get(r.request.kind, output)
        c, p = r.candidate.outputs.get(name), r.production.outputs.get(name)
        if c is None or p is None or np.shape(c) != np.shape(p):
            continue
        change = float(np.max(np.abs(np.asarray(c, np.float64) - np.asarray(p, np.float64)), initial=0.0))
        rows.append((change, r, name, p, c))
    rows.sort(key=lambda item: -item[0])
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request", "origin", "output", "production", "candidate", "max_abs_change"])
        for change, r, name, p, c in rows[:limit]:
            writer.writerow([f"{r.request.path.name}#{r.request.index + 1}", r.request.origin, name,
                             np.asarray(p).tolist(), np.asarray(c).tolist(), change])
    return min(len(rows), limit)
