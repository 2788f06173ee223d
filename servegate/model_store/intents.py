"""Write-ahead intents: a move's history line is on disk before the move is made.

Every move of a version between areas (stage's publishing rename, promote,
reject, retire, rollback) is followed by its history line. A process killed
between the two would leave a version whose history does not say who moved it,
and a staged version that nobody could then judge abandoned. So the move is
announced first (:func:`announced`):

1. the line it will append (operation, version, from/to areas, reason, run id,
   started, detail and the writer's pid, host and start ticks) is written
   atomically to ``.servegate/<model>/intent-<operation>-<version>-<token>.json``;
2. the version is moved;
3. the line is appended to the history, then the intent is removed.

Intents are written and read under the model lock, so an intent that recovery
finds belongs to a dead writer, or, within this process, to a change that
raised. The moves still running in this process (a recovery inside a change
holding the reentrant lock, or in a thread sharing it) are left to finish.
:func:`complete_interrupted` settles each one by where the version is now:

- in the intent's destination, its line missing: the line is appended as
  planned, with the original writer's identity and the time the intent was
  written (the move came right after), and ``detail.completed_by`` naming the
  recovering process;
- in the destination with its line already written (killed before step 3's
  removal), or still where it was (killed before the move): the intent is dropped.

The removal of an intent is not fsync'd: an intent that reappears after a power
loss finds its line written and is dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servegate.model_store import fsutil
from servegate.model_store import history as history_mod
from servegate.model_store.history import HistoryRecord
from servegate.model_store.layout import AREAS, INTENT_PREFIX, INTENT_SUFFIX, Layout, new_token
from servegate.model_store.locking import now_iso
from servegate.model_store.reading import Scan, entries
from servegate.model_store.results import RecoveryReport
from servegate.runtime.identity import ProcessIdentity

# Intent files of changes running in this process: a thread that shares the
# model lock (``share_with_threads``) must not settle another thread's move.
_running: set[str] = set()
_running_guard = threading.Lock()


@dataclass(frozen=True)
class Intent:
    """One intent file and the history line it holds."""

    path: Path
    line: HistoryRecord


def _write(path: Path, line: HistoryRecord) -> None:
    data = json.dumps({"line": line.to_dict()}, sort_keys=True, indent=1).encode() + b"\n"
    fsutil.write_atomic(path, data)


@contextlib.contextmanager
def announced(layout: Layout, name: str, line: HistoryRecord, src: Path) -> Iterator[dict]:
    """Write-ahead for one move of ``src``: the intent holding ``line``, the block (the move), the line.

    Yields a dict the block may fill with details known only after the move
    (how it moved); they join ``line.detail``. When the block raises and
    ``src`` is still there, nothing moved and the intent is dropped; otherwise
    it stays for recovery.
    """
    path = layout.intent_file(name, line.operation, line.version, new_token())
    _write(path, line)
    fsutil.checkpoint(f"{line.operation}:intent-written")
    with _running_guard:
        _running.add(str(path))
    extra: dict = {}
    try:
        try:
            yield extra
        except BaseException:
            if os.path.lexists(src):
                _remove(path)
            raise
        done = dataclasses.replace(line, time=now_iso(), detail={**line.detail, **extra})
        history_mod.append_transition(layout.history_file(name), done)
        _remove(path)
    finally:
        with _running_guard:
            _running.discard(str(path))


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass
class Pending:
    """The intent files of one model: of dead writers (oldest first), unreadable, of moves running here."""

    dead: list[Intent]
    unreadable: list[Path]
    running: list[Intent]


def pending(layout: Layout, name: str) -> Pending:
    meta = layout.meta_dir(name)
    found = Pending([], [], [])
    for entry in entries(meta):
        path = meta / entry
        if not (entry.startswith(INTENT_PREFIX) and entry.endswith(INTENT_SUFFIX)):
            continue
        try:
            line = HistoryRecord.from_dict(json.loads(path.read_bytes())["line"])
            if not isinstance(line.version, int) or line.operation == "":
                raise ValueError("no version or operation")
        except (OSError, ValueError, TypeError, KeyError):
            found.unreadable.append(path)
            continue
        with _running_guard:
            running = str(path) in _running
        (found.running if running else found.dead).append(Intent(path, line))
    found.dead.sort(key=lambda intent: intent.line.time)
    return found


def _settle(history_file: Path, intent: Intent, where: set[str], recorded: str | None) -> str:
    """Complete or drop one intent (see the module docstring); returns what was done."""
    line = intent.line
    move = f"{line.operation} of version {line.version} ({line.from_area} -> {line.to_area})"
    if line.to_area in where and line.from_area not in where and recorded != line.to_area:
        me = ProcessIdentity.current()
        completed = dataclasses.replace(line, detail={
            **line.detail, "completed_by": {"operation": "recover", "time": now_iso(), **me.to_dict()}})
        history_mod.append_transition(history_file, completed)
        result = (f"history: {move} by pid {line.pid} (run {line.run_id}) was interrupted after the move; "
                  "its line is recorded as planned")
    elif line.to_area in where and line.from_area not in where:
        result = f"dropped the intent of {move}: its history line was written"
    else:
        result = f"dropped the intent of {move}: the move was not made"
    _remove(intent.path)
    return result


def complete_interrupted(layout: Layout, name: str, scanned: Scan, report: RecoveryReport) -> set[int]:
    """Recovery's step: settle every intent a dead writer left (see the module docstring).

    Returns the versions that a change of this process is moving right now:
    their history is that change's to write.
    """
    found = pending(layout, name)
    for path in found.unreadable:
        _remove(path)
        report.actions.append(f"removed unreadable intent file {path}")
    moving = {intent.line.version for intent in found.running}
    if not found.dead:
        return moving
    history_file = layout.history_file(name)
    last_area = {r.version: r.to_area for r in history_mod.read(history_file) if isinstance(r.version, int)}
    for intent in found.dead:
        line = intent.line
        where = {area for area in AREAS if line.version in scanned[area]}
        report.actions.append(_settle(history_file, intent, where, last_area.get(line.version)))
        if line.to_area in where and line.from_area not in where:
            last_area[line.version] = line.to_area
    return moving
