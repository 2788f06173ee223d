"""Write TensorFlow Serving's warm-up file into a SavedModel, from reference rows.

TensorFlow Serving (and servegate's bundled server) replays
``<savedmodel>/assets.extra/tf_serving_warmup_requests`` when it loads a
version, before reporting it AVAILABLE, so that the first real requests after
a swap do not pay for lazy initialisation (TensorFlow Serving's
saved_model_warmup.md). The format, from that page: a TFRecord file whose
records are ``PredictionLog`` protos, at most 1000 of them, representative of
the requests served. Here each record is a ``PredictLog`` holding a
``PredictRequest`` against the served signature.

What TensorFlow initialises lazily (kernels, the graph's optimisation for an
input shape) is done once per distinct input shape: a second request of a
shape already replayed warms nothing more, and only lengthens every load of
the version. So the file holds one record per distinct request shape (the
dtype and shape of each input, and the signature): from reference rows, one
row per request (batch of 1, a typical online request), so one record; from
recorded traffic, the first request of each batch shape seen. A server that
wants each record replayed more than once has
``--num_request_iterations_for_warmup``.

The file is written with ``tf.io.TFRecordWriter`` (TensorFlow computes the
TFRecord framing and its masked CRC32C checksums) under a temporary name,
fsynced, then renamed: a crash never leaves a half-written file that would
make every later load of the version fail with DATA_LOSS.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from servegate.errors import ValidationInputError

log = logging.getLogger(__name__)

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE_NAME = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TensorFlow Serving refuses to load a version whose file holds more


class WarmupDataError(ValidationInputError):
    """The rows or the SavedModel given to :func:`write_warmup_requests` cannot make a warm-up file."""


def warmup_file(savedmodel_dir: Path) -> Path:
    """Where TensorFlow Serving looks for the warm-up file of a SavedModel (a version directory)."""
    return Path(savedmodel_dir) / ASSETS_EXTRA / WARMUP_FILE_NAME


def _rows(inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The inputs as arrays with one shared first dimension (the rows); errors name the input."""
    if not isinstance(inputs, dict) or not inputs:
        raise WarmupDataError("warm-up inputs: expected a non-empty dict {signature input name: array of rows}")
    arrays: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.ndim == 0:
            raise WarmupDataError(f"warm-up input {name!r}: expected an array of rows (at least 1 dimension), "
                                  "got a scalar")
        if array.dtype.kind in ("U", "S"):
            array = array.astype(object)
        arrays[str(name)] = array
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise WarmupDataError(f"warm-up inputs: expected the same number of rows in every input, got {lengths}")
    n_rows = next(iter(lengths.values()))
    if n_rows == 0:
        raise WarmupDataError("warm-up inputs: expected at least one row, got 0")
    return arrays, n_rows


def _shape_key(inputs: dict[str, tuple[str, tuple[int, ...]]], signature_name: str) -> tuple:
    """What makes two requests warm up the same: the signature and each input's dtype and shape."""
    return signature_name, tuple(sorted(inputs.items()))


def _row_key(arrays: dict[str, np.ndarray], row: int, signature_name: str) -> tuple:
    return _shape_key({name: (array.dtype.str, array[row:row + 1].shape) for name, array in arrays.items()},
                      signature_name)


def _request_key(request) -> tuple:
    return _shape_key({name: (int(tensor.dtype), tuple(d.size for d in tensor.tensor_shape.dim))
                       for name, tensor in request.inputs.items()}, request.model_spec.signature_name)


def _request_bytes(arrays: dict[str, np.ndarray], row: int, model_name: str, signature_name: str) -> bytes:
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from servegate.serving.server.tensor_codec import CodecError, ndarray_to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, array in arrays.items():
        try:
            request.inputs[name].CopyFrom(ndarray_to_tensor_proto(array[row:row + 1]))
        except CodecError as exc:
            raise WarmupDataError(f"warm-up input {name!r}: {exc}") from None
    record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return record.SerializeToString()


def _write_atomically(target: Path, records: list[bytes]) -> None:
    import tensorflow as tf

    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with tf.io.TFRecordWriter(str(temp)) as writer:
            for record in records:
                writer.write(record)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_warmup_from_requests(savedmodel_dir: Path, requests: list, *, model_name: str) -> Path | None:
    """Write the warm-up file from recorded ``PredictRequest``s: the first of each distinct request shape
    (at most 1000 records; each addressed to ``model_name`` at whatever version loads it). None, writing
    nothing, when there are none or the SavedModel already has a warm-up file."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    savedmodel_dir = Path(savedmodel_dir)
    target = warmup_file(savedmodel_dir)
    if not requests or target.exists():
        return None
    records, seen = [], set()
    for recorded in requests:
        key = _request_key(recorded)
        if key in seen:
            continue
        if len(records) == MAX_WARMUP_RECORDS:
            break
        seen.add(key)
        request = predict_pb2.PredictRequest()
        request.CopyFrom(recorded)
        request.model_spec.Clear()  # the version that loads the file answers it, whatever was addressed then
        request.model_spec.name = model_name
        request.model_spec.signature_name = recorded.model_spec.signature_name
        records.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    _write_atomically(target, records)
    log.info("wrote %d warm-up requests (one per request shape among %d recorded) to %s",
             len(records), len(requests), target)
    return target


def write_warmup_requests(
    savedmodel_dir: Path,
    inputs: dict[str, np.ndarray],
    *,
    model_name: str,
    signature_name: str = "serving_default",
    count: int = 100,
) -> Path | None:
    """Write ``<savedmodel_dir>/assets.extra/tf_serving_warmup_requests``; returns its path.

    ``inputs`` maps each input of ``signature_name`` to an array of rows (the
    same number of rows in each, dtypes as the signature wants them). Of the
    first ``count`` rows, each row of a request shape not seen yet becomes a
    PredictRequest of that one row (arrays of rows share one shape per input,
    so this is one record; at most 1000).

    Returns None, writing nothing, when ``count <= 0`` (warm-up off) or when
    the SavedModel already has a warm-up file (the user's own is kept).
    Raises :class:`WarmupDataError` for unusable rows or a directory that is
    not a SavedModel.
    """
    savedmodel_dir = Path(savedmodel_dir)
    target = warmup_file(savedmodel_dir)
    if count <= 0:
        return None
    if target.exists():
        log.info("keeping the warm-up file the SavedModel already has: %s", target)
        return None
    if not any((savedmodel_dir / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise WarmupDataError(f"warm-up: {savedmodel_dir} is not a SavedModel directory (no saved_model.pb)")
    arrays, n_rows = _rows(inputs)
    first_of_shape: dict[tuple, int] = {}
    for row in range(min(int(count), n_rows)):
        first_of_shape.setdefault(_row_key(arrays, row, signature_name), row)
    rows = list(first_of_shape.values())[:MAX_WARMUP_RECORDS]
    records = [_request_bytes(arrays, row, model_name, signature_name) for row in rows]
    _write_atomically(target, records)
    log.info("wrote %d warm-up request(s) (one per request shape, signature %s) to %s",
             len(records), signature_name, target)
    return target
