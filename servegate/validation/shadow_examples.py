"""Recorded REST ``:classify`` and ``:regress`` requests, replayed in the form they arrived.

A classify or regress request was logged as the ``tf.Example``s its JSON
``examples`` decoded to (each merged with the body's ``context``). The replay
rebuilds that JSON body (a one-value feature as a scalar, several as a list,
bytes as UTF-8 text or ``{"b64": ...}``), which the server decodes back to the
same examples, and posts it to each version's ``:classify`` / ``:regress``
with the signature the request was answered on. The answers are read back as
arrays: ``scores`` and ``classes`` (one row per example, one column per class)
for classify, ``outputs`` (one value per example) for regress.

Such a request names its own signature (a classification or regression one),
not the predict signature validation reads; it is checked against what
production serves before anything is replayed, so that logs of a signature
production does not have are refused naming why instead of being left out.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from servegate.validation.shadow_logs import Recorded, RecordedTraffic, TrafficLogError

#: REST verb -> the signature method TF Serving requires for it, and the output an answer is read into.
METHODS = {"classify": "tensorflow/serving/classify", "regress": "tensorflow/serving/regress"}
MAIN_OUTPUT = {"classify": "scores", "regress": "outputs"}


def _feature_json(feature) -> Any:
    kind = feature.WhichOneof("kind")
    if kind == "float_list":
        values: list[Any] = [float(v) for v in feature.float_list.value]
    elif kind == "int64_list":
        values = [int(v) for v in feature.int64_list.value]
    elif kind == "bytes_list":
        values = []
        for raw in feature.bytes_list.value:
            try:
                values.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                values.append({"b64": base64.b64encode(raw).decode()})
    else:
        values = []
    return values[0] if len(values) == 1 else values


def examples_body(request) -> dict:
    """The REST ``:classify`` / ``:regress`` body a logged Classification/RegressionRequest came as."""
    which = request.input.WhichOneof("kind")
    if which != "example_list":
        raise ValueError(f"a request input of kind {which or 'none'} (expected example_list)")
    examples = [{name: _feature_json(f) for name, f in ex.features.feature.items()}
                for ex in request.input.example_list.examples]
    body: dict[str, Any] = {"examples": examples}
    if request.model_spec.signature_name:
        body["signature_name"] = request.model_spec.signature_name
    return body


def request_of(item: Recorded):
    """The logged request of a classify or regress record."""
    return getattr(item.record, item.kind + "_log").request


def answer_arrays(kind: str, answer: dict) -> dict[str, np.ndarray]:
    """A ``:classify`` answer as ``scores`` (float, [examples, classes]) and ``classes`` (labels, same shape);
    a ``:regress`` answer as ``outputs`` (float, [examples])."""
    results = answer["results"]
    if kind == "regress":
        return {"outputs": np.asarray(results, dtype=np.float64).reshape(-1)}
    classes = np.asarray([[str(item[0]) for item in row] for row in results], dtype=object)
    scores = np.asarray([[float(item[1]) if len(item) > 1 else np.nan for item in row] for row in results],
                        dtype=np.float64)
    return {"scores": scores, "classes": classes}


def recorded_signatures(traffic: RecordedTraffic) -> dict[tuple[str, str], Recorded]:
    """(verb, signature) -> its first recorded request, for the classify and regress records."""
    found: dict[tuple[str, str], Recorded] = {}
    for item in traffic.requests:
        if item.kind in METHODS:
            signature = item.record.log_metadata.model_spec.signature_name or "serving_default"
            found.setdefault((item.kind, signature), item)
    return found


def check_replayable(client, traffic: RecordedTraffic, production: dict) -> None:
    """Refuse, naming why, recorded classify/regress requests that cannot be replayed as they arrived:
    a canary without a REST API, or a signature production does not serve with that method."""
    wanted = recorded_signatures(traffic)
    if not wanted:
        return
    first = next(iter(wanted.values()))
    if not client.rest_url:
        raise TrafficLogError(f"request log {first.where()}: a REST :{first.kind} request, but the canary "
                              "has no REST API to replay it on", subject=str(first.path))
    metadata = client.metadata(**production)
    signatures = metadata.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
    who = f"production ({', '.join(f'{k} {v}' for k, v in production.items())})"
    for (kind, signature), item in wanted.items():
        found = signatures.get(signature)
        if found is None:
            raise TrafficLogError(
                f"request log {item.path} record #{item.index + 1}: a :{kind} request on signature "
                f"{signature!r}, but {who} has no such signature (it has: {', '.join(sorted(signatures))}); "
                "these logs are of another model (check traffic.logs / --traffic)", subject=str(item.path))
        if found.get("method_name") != METHODS[kind]:
            raise TrafficLogError(
                f"request log {item.path} record #{item.index + 1}: a :{kind} request on signature "
                f"{signature!r}, but {who} serves that signature with method {found.get('method_name')!r}, "
                f"not {METHODS[kind]!r}: it cannot be replayed as a :{kind} request", subject=str(item.path))
