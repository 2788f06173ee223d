"""The request-log recorder's queue (drops when full) and the reader (whole records only, truncation reported)."""

from __future__ import annotations

import contextlib
import threading

from tensorflow_serving.apis import prediction_log_pb2

from servegate.traffic.reader import LogReader, masked_crc32c
from servegate.traffic.recorder import Recorder, RotationLimits, log_files


def _record(name: str) -> bytes:
    record = prediction_log_pb2.PredictionLog()
    record.log_metadata.model_spec.name = name
    record.predict_log.request.model_spec.name = name
    return record.SerializeToString()


@contextlib.contextmanager
def _stuck_writer(tmp_path, first: str):
    """A recorder with a queue of one whose writer is stuck on its first record (a slow disk) until the
    block ends; yields (recorder, prefix, drops)."""
    release, started = threading.Event(), threading.Event()
    dropped: list[tuple[str, str]] = []
    recorder = Recorder(queue_size=1, on_drop=lambda model, reason: dropped.append((model, reason)))
    prefix = str(tmp_path / "m")

    def slow() -> bytes:
        started.set()
        release.wait(10)
        return _record(first)

    try:
        assert recorder.submit(prefix, "m", slow)
        started.wait(5)
        yield recorder, prefix, dropped
    finally:
        release.set()
        recorder.close()


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path):
    with _stuck_writer(tmp_path, "m") as (recorder, prefix, dropped):
        assert recorder.submit(prefix, "m", lambda: _record("m"))      # fills the queue of one
        assert not recorder.submit(prefix, "m", lambda: _record("m"))  # dropped at once, no wait
        assert dropped == [("m", "queue_full")]
    assert sum(1 for p in log_files(prefix) for _ in LogReader().records(p)) == 2


def test_finished_records_are_written_as_queued_and_a_full_queue_refuses_before_building(tmp_path):
    """The bundled server builds a record on the request thread only when ``has_room``, then queues bytes."""
    with _stuck_writer(tmp_path, "first") as (recorder, prefix, dropped):
        assert recorder.has_room("m") and recorder.submit(prefix, "m", _record("second"))
        assert not recorder.has_room("m")  # full: the caller builds nothing, the drop is counted once
        assert dropped == [("m", "queue_full")]
    names = [record.log_metadata.model_spec.name for p in log_files(prefix) for record in LogReader().records(p)]
    assert names == ["first", "second"]


def test_a_truncated_file_yields_its_whole_records_and_reports_the_rest(tmp_path):
    recorder = Recorder(limits=RotationLimits())
    prefix = str(tmp_path / "m")
    for i in range(3):
        recorder.submit(prefix, "m", lambda i=i: _record(f"m{i}"))
    recorder.close()
    (path,) = log_files(prefix)
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # cut inside the last record
    reader = LogReader()
    names = [r.log_metadata.model_spec.name for r in reader.records(path)]
    assert names == ["m0", "m1"]
    (skipped,) = reader.skipped
    assert "truncated record" in skipped.reason and skipped.path == path
    assert skipped.size == len(data) - 7 - skipped.offset


def test_a_file_that_is_not_tfrecord_is_reported_not_raised(tmp_path):
    path = tmp_path / "m-x.tfrecord"
    path.write_bytes(b"this is not a TFRecord file at all")
    reader = LogReader()
    assert list(reader.records(path)) == []
    assert "CRC mismatch" in reader.skipped[0].reason


def test_masked_crc_matches_tensorflows_framing(tmp_path):
    import struct

    import tensorflow as tf

    path = tmp_path / "one.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"abc")
    data = path.read_bytes()
    assert struct.unpack("<I", data[8:12])[0] == masked_crc32c(data[:8])
    assert struct.unpack("<I", data[15:19])[0] == masked_crc32c(b"abc")


def test_a_framed_record_parses_to_the_prediction_log_protobuf_would_build():
    """The builders frame the serialized request and response by hand (no copy into a new message): the
    bytes must parse to exactly the message protobuf builds, field by field, for big payloads too (lengths
    of more than one varint byte)."""
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto
    from servegate.traffic import prediction_log as plog

    served = plog.Served("m", 7, "serving_default", plog.ORIGIN_GRPC, 0.5, 1_700_000_000)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(ndarray_to_tensor_proto(np.arange(5000, dtype=np.float32).reshape(50, 100)))
    request.inputs["s"].CopyFrom(ndarray_to_tensor_proto(np.array([b"a", b"bc"], dtype=object)))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "m"
    response.outputs["y"].CopyFrom(ndarray_to_tensor_proto(np.float32(3.5)))
    expected = prediction_log_pb2.PredictionLog(log_metadata=plog.metadata(served))
    expected.predict_log.request.CopyFrom(request)
    expected.predict_log.response.CopyFrom(response)
    assert plog.parse(plog.grpc_predict_log(served, request, response)) == expected

    rows = plog.Served("m", 7, "serving_default", plog.ORIGIN_ROWS, 1.0)  # no time given: now
    record = plog.parse(plog.rest_predict_log(rows, plog.Addressed(label="stable"), {"x": np.ones((2, 3), "int64")},
                                              {"y": np.float32(1.0)}))
    assert record.log_metadata.request_origin == "rest:instances" and record.log_metadata.timestamp_secs > 0
    assert record.predict_log.request.model_spec.version_label == "stable"
    assert [d.size for d in record.predict_log.request.inputs["x"].tensor_shape.dim] == [2, 3]
    assert record.predict_log.response.outputs["y"].HasField("tensor_shape")  # a scalar: present, empty
    assert record.predict_log.response.model_spec.version.value == 7
