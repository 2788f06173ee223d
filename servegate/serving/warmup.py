"""Write TensorFlow Serving's warm-up file into a SavedModel, from reference rows.

TensorFlow Serving (and servegate's bundled server) replays
``<savedmodel>/assets.extra/tf_serving_warmup_requests`` when it loads a
version, before reporting it AVAILABLE, so that the first real requests after
a swap do not pay for lazy initialisation (TensorFlow Serving's
saved_model_warmup.md). The format, from that page: a TFRecord file whose
records are ``PredictionLog`` protos, at most 1000 of them, representative of
the requests served. Here each record is a ``PredictLog`` holding a
``PredictRequest`` against the served signature with one reference row
(batch of 1, the shape of a typical online request); rows are taken in
order and start again from the first when ``count`` exceeds them.

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
    """Write the warm-up file from recorded ``PredictRequest``s (at most 1000; each addressed to
    ``model_name`` at whatever version loads it). None, writing nothing, when there are none or the
    SavedModel already has a warm-up file."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    savedmodel_dir = Path(savedmodel_dir)
    target = warmup_file(savedmodel_dir)
    if not requests or target.exists():
        return None
    records = []
    for recorded in requests[:MAX_WARMUP_RECORDS]:
        request = predict_pb2.PredictRequest()
        request.CopyFrom(recorded)
        request.model_spec.Clear()  # the version that loads the file answers it, whatever was addressed then
        request.model_spec.name = model_name
        request.model_spec.signature_name = recorded.model_spec.signature_name
        records.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    _write_atomically(target, records)
    log.info("wrote %d warm-up requests from recorded traffic to %s", len(records), target)
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
    same number of rows in each, dtypes as the signature wants them). The file
    gets ``min(count, 1000)`` PredictRequests of one row each.

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
    n_records = min(int(count), MAX_WARMUP_RECORDS)
    records = [_request_bytes(arrays, i % n_rows, model_name, signature_name) for i in range(n_records)]
    _write_atomically(target, records)
    log.info("wrote %d warm-up requests (signature %s) to %s", n_records, signature_name, target)
    return target
