"""What the deploy flow's rollback hooks need beside the transaction's values, kept in the work dir.

Prefect runs a transaction's ``on_rollback`` hooks the moment a task in it
fails, before the flow sees the failure, and it copies transaction values.
So the failing task notes its reason here first (``failure.txt``), each hook
reads it, and notes what its undo changed in the record (``undone.json``)
for the flow to fold into the outcome (e.g. ``rolled_back``). Plain files:
nothing lives in a process-global table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servegate.attempt import cancel
from servegate.attempt.verdict import BakeAlarm, ModelRejected, ProductionVerificationError, failure_reason
from servegate.attempt.record import AttemptRecord

FAILURE_FILE = "failure.txt"
UNDONE_FILE = "undone.json"


def note_failure(work_dir: str, exc: BaseException) -> None:
    Path(work_dir, FAILURE_FILE).write_text(failure_reason(exc))


def failure(work_dir: str) -> str:
    cancelled = cancel.reason()  # a signal is the reason, whatever failed when it landed
    if cancelled is not None:
        return cancelled
    path = Path(work_dir, FAILURE_FILE)
    return path.read_text() if path.exists() else "deploy failed"


def note_undo(before: AttemptRecord, after: AttemptRecord) -> None:
    """Keep the fields ``after`` changed (merged with earlier undos of this attempt)."""
    path = Path(before.work_dir, UNDONE_FILE)
    changes = json.loads(path.read_text()) if path.exists() else {}
    old, new = before.to_dict(), after.to_dict()
    changes.update({k: v for k, v in new.items() if old.get(k) != v})
    path.write_text(json.dumps(changes))


def apply_undone(record: AttemptRecord) -> AttemptRecord:
    """``record`` with what the rollback hooks changed."""
    path = Path(record.work_dir, UNDONE_FILE)
    if not path.exists():
        return record
    return AttemptRecord.from_dict({**record.to_dict(), **json.loads(path.read_text())})


VERDICT_FILE = "verdict.json"


def note_verdict(exc: BaseException, record: AttemptRecord) -> str:
    """Keep a judged step's verdict in the work dir (the flow turns it back into the exception);
    returns the name of the task's Failed state. Kept out of the state's data, which Prefect's
    log line would print whole."""
    payload = verdict_payload(exc, record)
    Path(record.work_dir, VERDICT_FILE).write_text(json.dumps(payload))
    return payload["state_name"]


def read_verdict(work_dir: str) -> tuple[BaseException, AttemptRecord] | None:
    path = Path(work_dir, VERDICT_FILE)
    if not path.exists():
        return None
    exc, judged = verdict_from_payload(json.loads(path.read_text()))
    path.unlink()
    return exc, judged


def verdict_payload(exc: BaseException, record: AttemptRecord) -> dict[str, Any]:
    """A judged step's verdict as plain values."""
    kind = "rejected" if isinstance(exc, ModelRejected) else "bake" if isinstance(exc, BakeAlarm) else "production"
    state_name = {"rejected": "Rejected", "bake": "BakeAlarm"}.get(kind, "VerificationFailed")
    return {"verdict": kind, "state_name": state_name, "message": failure_reason(exc),
            "reasons": list(getattr(exc, "reasons", [])), "alarm": getattr(exc, "alarm", None),
            "record": record.to_dict()}


def verdict_from_payload(payload: dict[str, Any]) -> tuple[BaseException, AttemptRecord]:
    if payload["verdict"] == "rejected":
        exc: BaseException = ModelRejected(payload["message"], payload["reasons"])
    elif payload["verdict"] == "bake":
        exc = BakeAlarm(payload["message"], payload.get("alarm"))
    else:
        exc = ProductionVerificationError(payload["message"])
    return exc, AttemptRecord.from_dict(payload["record"])
