"""The append-only history of every transition, one JSON object per line.

``<root>/.servegate/<model>/history.jsonl``; each line is a
:class:`HistoryRecord`. Lines are appended and fsync'd under the model lock
right after the transition they describe. A writer killed in the middle of a
line leaves a torn last line: readers skip it and the next writer starts on a
new line.

A move between areas is announced before it is made: its line is planned
(:func:`planned_transition`) and kept durably as a write-ahead intent
(:mod:`~servegate.model_store.intents`) until it is appended. A writer killed
between its move and its line therefore loses nothing: the next change's
recovery appends the planned line as its writer would have, with the writer's
identity, its run id and its reason, marked ``detail.completed_by`` (the
recovering process). Only a difference between the areas and the history that
no intent explains (a version made, moved or removed by hand) gets a
``recover`` line.

Each line names the process that made the transition (``pid``, ``host`` and,
since ``ticks`` was added, its start time: :mod:`servegate.runtime.identity`),
so that a later deploy can tell a version staged by a killed deploy from one
staged by a deploy still running. Older lines have no ``ticks`` (None: any
start time matches). A line completed by recovery names the killed writer,
not the recovering process: the version it staged is judged abandoned.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from servegate.model_store import fsutil
from servegate.model_store.locking import now_iso
from servegate.runtime.identity import ProcessIdentity


@dataclass(frozen=True)
class HistoryRecord:
    time: str                      # ISO 8601 UTC, when the transition completed (see intents)
    model: str
    version: int
    from_area: str | None          # None: came from outside the store (stage)
    to_area: str | None            # None: left the store (deleted)
    reason: str | None = None
    run_id: str | None = None
    operation: str = ""            # stage | promote | reject | rollback | retire | recover
    started: str | None = None     # when the operation took the model lock
    pid: int | None = None         # the process that made the transition ...
    host: str | None = None
    detail: dict = field(default_factory=dict)
    ticks: int | None = None       # ... and its start time (runtime.identity); None in lines written before

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HistoryRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def planned_transition(name: str, version: int, from_area: str | None, to_area: str | None, *,
                       operation: str, reason: str | None = None, run_id: str | None = None,
                       started: str | None = None, detail: dict | None = None,
                       writer: ProcessIdentity | None = None) -> HistoryRecord:
    """The line of a transition about to be made by ``writer`` (default: this process); ``time`` is now."""
    who = writer or ProcessIdentity.current()
    return HistoryRecord(
        time=now_iso(), model=name, version=version, from_area=from_area, to_area=to_area,
        reason=reason, run_id=run_id, operation=operation, started=started,
        pid=who.pid, host=who.host, ticks=who.start_ticks, detail=dict(detail or {}),
    )


def append_transition(path: Path, record: HistoryRecord) -> HistoryRecord:
    """Append a planned line as it is (its identity and time included)."""
    append(path, record)
    fsutil.checkpoint(f"{record.operation}:recorded")
    return record


def record_transition(path: Path, name: str, version: int, from_area: str | None, to_area: str | None, *,
                      operation: str, reason: str | None = None, run_id: str | None = None,
                      started: str | None = None, detail: dict | None = None,
                      writer: ProcessIdentity | None = None) -> HistoryRecord:
    """Append the line of a transition just made by ``writer`` (default: this process), timed now."""
    return append_transition(path, planned_transition(
        name, version, from_area, to_area, operation=operation, reason=reason, run_id=run_id,
        started=started, detail=detail, writer=writer))


def append(path: Path, record: HistoryRecord) -> None:
    line = json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":")).encode() + b"\n"
    fsutil.append_durable(path, line)


def read(path: Path, limit: int | None = None) -> list[HistoryRecord]:
    """The records in order (oldest first); with ``limit``, only the newest ``limit``."""
    if limit is not None and limit <= 0:
        return []
    records: deque[HistoryRecord] = deque(maxlen=limit)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return []
    with fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                data = json.loads(raw)
                records.append(HistoryRecord.from_dict(data))
            except (ValueError, TypeError):
                continue  # a line torn by a crash
    return list(records)


def exists(path: Path) -> bool:
    return os.path.exists(path)
