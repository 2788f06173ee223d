"""Read request logs back: TFRecord files of ``PredictionLog``, whole records only.

A log file may end in a partial record: the server was killed mid-write, the
disk filled, or the file is still being written. Such a tail is skipped and
reported (file, offset, bytes), never raised: what is whole is still good
traffic. A record whose length header fails its CRC32C, or whose payload is
not a ``PredictionLog``, ends the reading of that file the same way, because
past a broken frame nothing can be trusted to be aligned.

The reader is plain Python (no TensorFlow): the CRC is checked on each 8-byte
length header; payloads are checked by parsing them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC (rotate right by 15, add a constant)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True)
class SkippedPart:
    """Bytes of a file that were not read as records, and why."""

    path: Path
    offset: int
    size: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.size} bytes from offset {self.offset} skipped ({self.reason})"


@dataclass
class LogReader:
    """Iterate ``PredictionLog`` records of files; ``skipped`` lists what could not be read."""

    skipped: list[SkippedPart] = field(default_factory=list)

    def records(self, path: Path) -> Iterator[prediction_log_pb2.PredictionLog]:
        path = Path(path)
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            problem, payload, end = _frame(data, offset)
            if problem is None:
                try:
                    record = prediction_log_pb2.PredictionLog.FromString(payload)
                except DecodeError:
                    problem = "a record that is not a PredictionLog"
                else:
                    yield record
                    offset = end
                    continue
            self.skipped.append(SkippedPart(path, offset, len(data) - offset, problem))
            return


def _frame(data: bytes, offset: int) -> tuple[str | None, bytes, int]:
    """(problem or None, payload, offset after the record) of the record at ``offset``."""
    header = data[offset:offset + 12]
    if len(header) < 12:
        return "truncated record header", b"", offset
    (length,) = struct.unpack("<Q", header[:8])
    (length_crc,) = struct.unpack("<I", header[8:12])
    if masked_crc32c(header[:8]) != length_crc:
        return "corrupt record header (CRC mismatch): not a TFRecord file?", b"", offset
    end = offset + 12 + length + 4
    if end > len(data):
        return f"truncated record (expected {length} bytes of payload)", b"", offset
    return None, data[offset + 12:offset + 12 + length], end
