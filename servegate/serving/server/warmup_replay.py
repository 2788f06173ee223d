"""Model warm-up at load: replay ``<version>/assets.extra/tf_serving_warmup_requests``.

TensorFlow Serving's behaviour (``saved_model_warmup_util.cc``), kept here:

- the file is optional: without it the load goes on ("No warmup data file
  found at ...");
- it is a TFRecord file of ``PredictionLog`` records; each record's request
  (Predict, Classify, Regress or MultiInference) runs
  ``--num_request_iterations_for_warmup`` times against the freshly loaded
  session, before the version is reported AVAILABLE;
- any failure fails the load (the version ends in state END with that error,
  and load retries apply): a request the model rejects keeps its own status;
  a record that is not a PredictionLog is INVALID_ARGUMENT; a file that is not
  TFRecord is DATA_LOSS with "Please verify your warmup data is in TFRecord
  format."; more than 1000 records is INVALID_ARGUMENT; a SessionRun or
  PredictStreamed log is UNIMPLEMENTED;
- each replay adds one sample to ``:tensorflow:serving:model_warmup_latency``
  (labels ``model_path`` and ``status``).

Warm-up requests are not client requests: they do not count in
``request_count``/``request_latency``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterator

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from servegate.serving.server import json_api
from servegate.serving.server.grpc_service import run_predict_request
from servegate.serving.server.loader import LoadedVersion
from servegate.serving.server.metrics import METRICS, ServingMetrics
from servegate.serving.server.status import StatusError, code_name

log = logging.getLogger("servegate.serving.server")

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE_NAME = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # WarmupConsts::kMaxNumRecords

_EXAMPLE_METHODS = {
    "classify": (json_api.CLASSIFY_METHOD, "classification"),
    "regress": (json_api.REGRESS_METHOD, "regression"),
}


def warmup_file(version_dir: Path) -> Path:
    return Path(version_dir) / ASSETS_EXTRA / WARMUP_FILE_NAME


def _serialized_input(request_input) -> list[bytes]:
    """An ``Input``'s examples, serialized; with a context, context + example (protobuf merge), as TF Serving."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        context = request_input.example_list_with_context.context.SerializeToString()
        return [context + e.SerializeToString() for e in request_input.example_list_with_context.examples]
    raise StatusError("INVALID_ARGUMENT", "Input is empty.")


def _run_examples(servable: LoadedVersion, verb: str, request) -> None:
    method, what = _EXAMPLE_METHODS[verb]
    json_api.run_examples(servable, request.model_spec.signature_name, _serialized_input(request.input), method, what)


def run_warmup_record(servable: LoadedVersion, record: prediction_log_pb2.PredictionLog) -> None:
    """Run one record's request on ``servable``; raises :class:`StatusError` as serving it would."""
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        run_predict_request(servable, record.predict_log.request)
    elif kind == "classify_log":
        _run_examples(servable, "classify", record.classify_log.request)
    elif kind == "regress_log":
        _run_examples(servable, "regress", record.regress_log.request)
    elif kind == "multi_inference_log":
        request = record.multi_inference_log.request
        for task in request.tasks:
            verb = "classify" if task.method_name == json_api.CLASSIFY_METHOD else "regress"
            method, what = _EXAMPLE_METHODS[verb]
            json_api.run_examples(servable, task.model_spec.signature_name, _serialized_input(request.input),
                                  method, what)
    elif kind in ("session_run_log", "predict_streamed_log"):
        # TensorFlow Serving prints the oneof case, i.e. the field number.
        number = record.DESCRIPTOR.fields_by_name[kind].number
        raise StatusError("UNIMPLEMENTED", f"Unsupported log_type for warmup: {number}")
    # A record without a request is skipped, as in TensorFlow Serving.


def _records(path: Path) -> Iterator[bytes]:
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            yield raw
    except tf.errors.DataLossError as exc:
        raise StatusError("DATA_LOSS", f"{exc.message}. Please verify your warmup data is in TFRecord format.") from None
    except tf.errors.OpError as exc:
        raise StatusError(code_name(exc.error_code), exc.message) from None


def _replay(servable: LoadedVersion, path: Path, iterations: int) -> int:
    count = 0
    for raw in _records(path):
        if count >= MAX_WARMUP_RECORDS:
            raise StatusError(
                "INVALID_ARGUMENT",
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}",
            )
        try:
            record = prediction_log_pb2.PredictionLog.FromString(raw)
        except DecodeError:
            raise StatusError("INVALID_ARGUMENT", f"Failed to parse warmup record #{count + 1} from {path}") from None
        for _ in range(iterations):
            run_warmup_record(servable, record)
        count += 1
    return count


def run_warmup(servable: LoadedVersion, iterations: int = 1, metrics: ServingMetrics = METRICS) -> int:
    """Replay the version's warm-up file, if any; returns the number of records replayed."""
    path = warmup_file(servable.path)
    if not path.is_file():
        log.info("No warmup data file found at %s", path)
        return 0
    log.info("Starting to read warmup data for model at %s with model-warmup-options num_request_iterations: %d",
             path, iterations)
    started = time.perf_counter()
    status = "OK"
    try:
        count = _replay(servable, path, iterations)
    except StatusError as exc:
        status = f"{exc.code}: {exc.message}"
        raise
    finally:
        metrics.record_warmup(str(servable.path), status, time.perf_counter() - started)
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
             "Elapsed time (microseconds): %d.", path, count, (time.perf_counter() - started) * 1e6)
    return count


def warmed_loader(
    load: Callable[[str, int, Path], LoadedVersion], iterations: int = 1, metrics: ServingMetrics = METRICS
) -> Callable[[str, int, Path], LoadedVersion]:
    """``load`` followed by the warm-up replay; a failed warm-up closes the session and fails the load."""

    def load_and_warm_up(name: str, version: int, path: Path) -> LoadedVersion:
        servable = load(name, version, path)
        try:
            run_warmup(servable, iterations, metrics)
        except BaseException:
            servable.close()
            raise
        return servable

    return load_and_warm_up
