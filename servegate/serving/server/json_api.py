"""TensorFlow Serving's REST request and response bodies, independent of the HTTP stack.

Each function takes the parsed JSON body and a loaded servable and returns
the response body, or raises :class:`StatusError` with TensorFlow Serving's
wording (each input error names the input). ``rest.py`` does the HTTP.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2

from servegate.serving.server.loader import LoadedVersion
from servegate.serving.server.manager import VersionStatus
from servegate.serving.server.status import StatusError
from servegate.serving.server.tensor_codec import CodecError, json_to_ndarray, ndarray_to_json

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def _invalid(message: str) -> StatusError:
    return StatusError("INVALID_ARGUMENT", message)


# ------------------------------------------------------------------ status


def status_body(statuses: list[VersionStatus]) -> dict:
    """``GetModelStatusResponse`` in protobuf JSON (int64 versions as strings)."""
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for s in statuses
        ]
    }


def metadata_body(servable: LoadedVersion) -> dict:
    """``GetModelMetadataResponse`` with the SignatureDefMap, default-valued fields printed."""
    signature_map = json_format.MessageToDict(
        servable.signature_def_map(),
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": signature_map},
    }


# ----------------------------------------------------------------- predict


def _signature_name(body: dict) -> str:
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise _invalid("'signature_name' must be a string")
    return name


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def predict_body(body: Any, servable: LoadedVersion, capture: dict | None = None) -> dict:
    """``:predict`` in row (``instances``) or columnar (``inputs``) form.

    ``capture`` (for the request log) receives the form, the signature key and
    the decoded input and output tensors.
    """
    if not isinstance(body, dict):
        raise _invalid("JSON Value: is not an object: the request body must be a JSON object")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows and has_columns:
        raise _invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    if not has_rows and not has_columns:
        raise _invalid("Missing 'inputs' or 'instances' key")
    key, sig = servable.signature(_signature_name(body))
    if has_rows:
        inputs = _rows_to_inputs(body["instances"], sig)
    else:
        inputs = _columns_to_inputs(body["inputs"], sig)
    _, outputs = servable.run(key, inputs)
    if capture is not None:
        capture.update(form="instances" if has_rows else "inputs", signature=key, inputs=inputs, outputs=outputs)
    if has_rows:
        return {"predictions": _outputs_to_rows(outputs)}
    if len(outputs) == 1:
        (name, value), = outputs.items()
        return {"outputs": ndarray_to_json(value, name)}
    return {"outputs": {name: ndarray_to_json(value, name) for name, value in outputs.items()}}


def decode_predict_inputs(body: Any, sig) -> tuple[str, dict[str, np.ndarray]]:
    """(``instances`` or ``inputs``, decoded tensors) of a ``:predict`` body, checked against ``sig``."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise _invalid("expected a JSON object with exactly one of 'instances' or 'inputs'")
    if "instances" in body:
        return "instances", _rows_to_inputs(body["instances"], sig)
    return "inputs", _columns_to_inputs(body["inputs"], sig)


def serialized_examples(body: Any) -> list[bytes]:
    """The ``tf.Example``s of a ``:classify``/``:regress`` body (each merged with ``context``), serialized."""
    return _serialized_examples(body)


def _decode(name: str, value: Any, sig) -> np.ndarray:
    info = sig.inputs.get(name)
    if info is None:
        raise _invalid(
            f"input tensor alias not found in signature: {name}. Inputs expected to be in the set "
            f"{{{','.join(sorted(sig.inputs))}}}."
        )
    try:
        return json_to_ndarray(value, info.dtype)
    except CodecError as exc:
        raise _invalid(f"Failed to process input '{name}': {exc}") from None


def _rows_to_inputs(instances: Any, sig) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise _invalid("Expecting 'instances' to be an list/array")
    if not instances:
        raise _invalid("Expecting 'instances' to be a non-empty list/array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        if len(sig.inputs) != 1:
            raise _invalid(
                f"Expecting 'instances' to be a list of JSON objects keyed by the signature's inputs "
                f"{{{','.join(sorted(sig.inputs))}}}, got a list of values"
            )
        (name,) = sig.inputs
        return {name: _decode(name, instances, sig)}
    names = list(instances[0])
    columns: dict[str, list] = {n: [] for n in names}
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise _invalid(f"Expecting object but got list at item {index} of input list")
        if set(item) != set(names):
            raise _invalid(
                f"Failed to process element: {index} of 'instances' list. Error: its inputs "
                f"{{{','.join(sorted(item))}}} differ from the first element's {{{','.join(sorted(names))}}}"
            )
        for n in names:
            columns[n].append(item[n])
    return {n: _decode(n, values, sig) for n, values in columns.items()}


def _columns_to_inputs(inputs: Any, sig) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        if not inputs:
            raise _invalid("'inputs' is an empty JSON object: expected the signature's inputs by name")
        return {name: _decode(name, value, sig) for name, value in inputs.items()}
    if len(sig.inputs) != 1:
        raise _invalid(
            f"'inputs' must be a JSON object keyed by the signature's inputs {{{','.join(sorted(sig.inputs))}}}"
        )
    (name,) = sig.inputs
    return {name: _decode(name, inputs, sig)}


def _outputs_to_rows(outputs: dict[str, np.ndarray]) -> list:
    batch = None
    for name, value in outputs.items():
        if value.ndim == 0:
            raise _invalid(f"Tensor name: {name} has no shape information; cannot return it in row format")
        if batch is None:
            batch = value.shape[0]
        elif value.shape[0] != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {value.shape[0]} expecting: {batch}")
    if len(outputs) == 1:
        (name, value), = outputs.items()
        return ndarray_to_json(value, name)
    columns = {name: ndarray_to_json(value, name) for name, value in outputs.items()}
    return [{name: columns[name][i] for name in columns} for i in range(batch or 0)]


# ------------------------------------------------------- classify / regress


def _feature(name: str, value: Any) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    if not values:
        return feature_pb2.Feature()
    if all(isinstance(v, bool) for v in values) or all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(v) for v in values]))
    raw = []
    for v in values:
        if isinstance(v, str):
            raw.append(v.encode("utf-8"))
        elif _is_b64(v):
            try:
                raw.append(base64.b64decode(v["b64"], validate=True))
            except (binascii.Error, ValueError, TypeError) as exc:
                raise _invalid(f"feature '{name}': invalid base64: {exc}") from None
        else:
            raise _invalid(f"feature '{name}': values must be all numbers or all strings, got {value!r}")
    return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=raw))


def _serialized_examples(body: Any) -> list[bytes]:
    if not isinstance(body, dict):
        raise _invalid("JSON Value: is not an object: the request body must be a JSON object")
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise _invalid("'examples' must be a non-empty list of JSON objects")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise _invalid("'context' must be a JSON object")
    result = []
    for index, item in enumerate(examples):
        if not isinstance(item, dict):
            raise _invalid(f"example {index} is not a JSON object")
        features = {**context, **item}  # an example's own features win over the context's
        example = example_pb2.Example(
            features=feature_pb2.Features(feature={k: _feature(k, v) for k, v in features.items()})
        )
        result.append(example.SerializeToString())
    return result


def run_examples(servable: LoadedVersion, signature_name: str, serialized: list[bytes], method: str,
                 what: str) -> dict[str, np.ndarray]:
    """Run a classify/regress signature on serialized ``tf.Example``s; {output alias: array}."""
    key, sig = servable.signature(signature_name)
    if sig.method_name != method:
        raise _invalid(f"Expected {what} signature method_name to be {method}. Was: {sig.method_name}")
    if "inputs" not in sig.inputs:
        raise _invalid(f"No {what} inputs found in SignatureDef: {key}")
    names = sorted(sig.outputs)
    feeds = {sig.inputs["inputs"].name: np.array(serialized, dtype=object)}
    arrays = servable.run_tensors(feeds, [sig.outputs[n].name for n in names])
    return dict(zip(names, arrays))


def _run_examples(body: Any, servable: LoadedVersion, method: str, what: str, capture: dict | None):
    serialized = _serialized_examples(body)
    outputs = run_examples(servable, _signature_name(body), serialized, method, what)
    if capture is not None:
        capture.update(form="examples", signature=servable.signature(_signature_name(body))[0],
                       examples=serialized)
    return outputs, len(serialized)


def classify_body(body: Any, servable: LoadedVersion, capture: dict | None = None) -> dict:
    """``:classify``: ``{"results": [[[label, score], ...] per example]}``."""
    outputs, count = _run_examples(body, servable, CLASSIFY_METHOD, "classification", capture)
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is None and scores is None:
        raise _invalid("Expected classification signature outputs to contain 'classes' or 'scores'")
    shape = (classes if classes is not None else scores).reshape(count, -1).shape
    labels = classes.reshape(shape) if classes is not None else np.full(shape, b"", dtype=object)
    results = []
    for i in range(count):
        row = []
        for j in range(shape[1]):
            label = labels[i, j].decode("utf-8", "replace") if isinstance(labels[i, j], bytes) else str(labels[i, j])
            row.append([label, float(np.float32(scores.reshape(shape)[i, j]).item())] if scores is not None else [label])
        results.append(row)
    # float32 scores printed with their shortest digits, as elsewhere.
    return {"results": _shorten(results)}


def regress_body(body: Any, servable: LoadedVersion, capture: dict | None = None) -> dict:
    """``:regress``: ``{"results": [value per example]}``."""
    outputs, count = _run_examples(body, servable, REGRESS_METHOD, "regression", capture)
    if "outputs" not in outputs:
        raise _invalid("Expected regression signature outputs to contain 'outputs'")
    values = outputs["outputs"]
    if values.size != count:
        raise _invalid(f"Expected output tensor of regression to have one value per example, got shape {values.shape}")
    return {"results": ndarray_to_json(values.reshape(count), "outputs")}


def _shorten(value: Any) -> Any:
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    if isinstance(value, float):
        return float(str(np.float32(value)))
    return value
