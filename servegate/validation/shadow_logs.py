"""Recorded traffic for the shadow check: the newest whole records of the request logs a glob names.

Records are read newest file first, newest record first, up to
``traffic.max_requests``; records older than ``traffic.max_age_hours`` are
left out and counted. A file's partial tail (a server killed mid-write, a
file still being written) is skipped and reported, the whole records before
it are used. A record of another model, or of another signature than the one
validated, is refused with an error naming the file and what it holds: a glob
that picks up the wrong logs must not judge a candidate on someone else's
traffic.
"""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass, field
from pathlib import Path

from servegate.errors import ValidationInputError
from servegate.traffic.reader import LogReader

_KINDS = {"predict_log": "predict", "classify_log": "classify", "regress_log": "regress"}


class TrafficLogError(ValidationInputError):
    """Recorded traffic that cannot be used for this model (another model or signature, another kind)."""


@dataclass
class Recorded:
    """One recorded request: its log record and where it came from."""

    kind: str           # predict | classify | regress
    origin: str         # grpc | rest:instances | rest:inputs | rest:examples
    record: object      # the PredictionLog
    path: Path
    index: int          # the record's position in its file

    def where(self) -> str:
        return f"{self.path.name} record #{self.index + 1} ({self.origin} {self.kind})"


@dataclass
class RecordedTraffic:
    pattern: str
    files: list[Path]
    requests: list[Recorded] = field(default_factory=list)
    too_old: int = 0
    skipped: list[str] = field(default_factory=list)  # partial tails and unreadable parts, in words


def load_traffic(pattern: str, model_name: str, signature_name: str, max_requests: int,
                 max_age_hours: float | None, now: float | None = None) -> RecordedTraffic:
    """The newest ``max_requests`` usable records of the files ``pattern`` matches (none: empty)."""
    files = sorted((Path(p) for p in glob.glob(str(Path(pattern).expanduser()))), key=lambda p: p.name)
    traffic = RecordedTraffic(pattern, files)
    oldest = None if max_age_hours is None else (now or time.time()) - max_age_hours * 3600
    reader = LogReader()
    for path in reversed(files):
        if not path.is_file():
            continue
        try:
            records = list(reader.records(path))
        except OSError as exc:
            raise TrafficLogError(f"request log {path}: cannot be read ({exc.strerror or exc})") from None
        for index in range(len(records) - 1, -1, -1):
            item = _recorded(records[index], path, index, model_name, signature_name)
            if oldest is not None and records[index].log_metadata.timestamp_secs < oldest:
                traffic.too_old += 1
                continue
            traffic.requests.append(item)
            if len(traffic.requests) >= max_requests:
                break
        if len(traffic.requests) >= max_requests:
            break
    traffic.skipped = [str(part) for part in reader.skipped]
    traffic.requests.reverse()  # replayed oldest first, as they arrived
    return traffic


def _recorded(record, path: Path, index: int, model_name: str, signature_name: str) -> Recorded:
    kind = _KINDS.get(record.WhichOneof("log_type") or "")
    where = f"request log {path} record #{index + 1}"
    if kind is None:
        raise TrafficLogError(f"{where}: a {record.WhichOneof('log_type') or 'empty'} record cannot be replayed "
                              "(expected predict, classify or regress logs)")
    spec = record.log_metadata.model_spec
    name = spec.name or getattr(record, kind + "_log").request.model_spec.name
    if name != model_name:
        raise TrafficLogError(f"{where}: recorded traffic of model {name!r}, but the model deployed is "
                              f"{model_name!r} (check traffic.logs / --traffic)")
    signature = spec.signature_name or "serving_default"
    # A classify/regress request names its own classification/regression signature, checked against
    # what production serves before the replay (validation/shadow_examples.py).
    if kind == "predict" and signature != signature_name:
        raise TrafficLogError(f"{where}: recorded on signature {signature!r}, but the signature validated is "
                              f"{signature_name!r} (check traffic.logs / --traffic, or signature_name)")
    origin = record.log_metadata.request_origin or "grpc"
    if kind != "predict" and origin != "rest:examples":
        raise TrafficLogError(f"{where}: a {kind} request that came as {origin!r}; the shadow check replays "
                              "classify and regress requests that came over REST (rest:examples), as they came")
    return Recorded(kind, origin, record, path, index)
