"""The request-log recorder's queue (drops when full) and the reader (whole records only, truncation reported)."""

from __future__ import annotations

import threading

from tensorflow_serving.apis import prediction_log_pb2

from servegate.traffic.reader import LogReader, masked_crc32c
from servegate.traffic.recorder import Recorder, RotationLimits, log_files


def _record(name: str) -> bytes:
    record = prediction_log_pb2.PredictionLog()
    record.log_metadata.model_spec.name = name
    record.predict_log.request.model_spec.name = name
    return record.SerializeToString()


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path):
    release = threading.Event()
    dropped: list[tuple[str, str]] = []
    recorder = Recorder(queue_size=1, on_drop=lambda model, reason: dropped.append((model, reason)))
    prefix = str(tmp_path / "m")
    try:
        started = threading.Event()

        def slow() -> bytes:
            started.set()
            release.wait(10)  # a writer stuck on a slow disk
            return _record("m")

        assert recorder.submit(prefix, "m", slow)
        started.wait(5)
        assert recorder.submit(prefix, "m", lambda: _record("m"))      # fills the queue of one
        assert not recorder.submit(prefix, "m", lambda: _record("m"))  # dropped at once, no wait
        assert dropped == [("m", "queue_full")]
    finally:
        release.set()
        recorder.close()
    assert sum(1 for p in log_files(prefix) for _ in LogReader().records(p)) == 2


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
