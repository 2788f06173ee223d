"""The deploy flow's journal: one file in the work dir for what its tasks and rollback hooks tell the flow.

Prefect runs a transaction's ``on_rollback`` hooks the moment a task in it
fails, before the flow sees the failure, and it copies transaction values.
So the failing task notes its reason here first (``failure``), each hook
reads it and notes what its undo changed in the record (``undone``, e.g.
``rolled_back``), and a judging task leaves its verdict with the record it
judged (``verdict``) rather than in its state's data, which Prefect's log
line would print whole. The flow reads all three back. A plain JSON file:
nothing lives in a process-global table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servegate.deploy import cancel
from servegate.deploy.record import AttemptRecord
from servegate.deploy.verdict import VERDICTS, failure_reason, from_payload

JOURNAL_FILE = "journal.json"


def _read(work_dir: str) -> dict[str, Any]:
    path = Path(work_dir, JOURNAL_FILE)
    return json.loads(path.read_text()) if path.exists() else {}


def _write(work_dir: str, **entries: Any) -> None:
    Path(work_dir, JOURNAL_FILE).write_text(json.dumps({**_read(work_dir), **entries}))


def note_failure(work_dir: str, exc: BaseException) -> None:
    _write(work_dir, failure=failure_reason(exc))


def failure(work_dir: str) -> str:
    cancelled = cancel.reason()  # a signal is the reason, whatever failed when it landed
    if cancelled is not None:
        return cancelled
    return _read(work_dir).get("failure") or "deploy failed"


def note_undo(before: AttemptRecord, after: AttemptRecord) -> None:
    """Keep the fields ``after`` changed (merged with earlier undos of this attempt)."""
    old, new = before.to_dict(), after.to_dict()
    undone = _read(before.work_dir).get("undone", {})
    undone.update({k: v for k, v in new.items() if old.get(k) != v})
    _write(before.work_dir, undone=undone)


def apply_undone(record: AttemptRecord) -> AttemptRecord:
    """``record`` with what the rollback hooks changed."""
    undone = _read(record.work_dir).get("undone")
    return AttemptRecord.from_dict({**record.to_dict(), **undone}) if undone else record


def note_verdict(exc: VERDICTS, current: AttemptRecord) -> str:
    """Keep a judged step's verdict (``exc`` and the record it carries; ``current`` when it carries
    none) for the flow; returns the name of the task's Failed state."""
    _write(current.work_dir, verdict=exc.payload(current))
    return exc.state_name


def take_verdict(work_dir: str) -> BaseException | None:
    """The verdict a judging task noted, as its exception carrying the judged record; None when none was."""
    entries = _read(work_dir)
    payload = entries.pop("verdict", None)
    if payload is None:
        return None
    Path(work_dir, JOURNAL_FILE).write_text(json.dumps(entries))
    return from_payload(payload, AttemptRecord.from_dict(payload["record"]))
