"""Recovery: repair what a crashed change left behind. Runs under the model lock at the start of every change.

In order (each step a function below):

1. :func:`remove_atomic_temp_files`: temp files of atomic writes (counter, holder) of dead writers;
2. :func:`inflight_markers`: which copies in progress are alive (their stager holds the marker);
3. :func:`remove_dead_temp_entries`: temp dirs and reason temp files beside the versions, except live copies';
4. :func:`resolve_versions_in_two_areas`: a version complete in two areas (a move between filesystems cut
   short). Production is never changed: a copy in production wins, else staging wins over ``rejected``;
   copies that differ are left alone and reported;
5. :func:`remove_orphan_reason_files`: reason files whose version is not in ``rejected/``;
6. :func:`~servegate.model_store.intents.complete_interrupted`: the write-ahead intents of moves whose
   writer died. A move that was made gets the history line its writer planned, naming that writer
   (so a version staged by a killed deploy is judged abandoned like any other); one that was not made
   has its intent dropped;
7. :func:`record_lost_history`: a ``recover`` history line for every version whose area still differs
   from what the history says: a change made by hand outside servegate (or a line lost in a way no
   intent covers, e.g. a history file restored from an old backup).

A dead holder's lock needs nothing: the kernel released it with the holder.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from servegate.model_store import fsutil, intents
from servegate.model_store import history as history_mod
from servegate.model_store.layout import (
    AREAS,
    ATOMIC_TMP_PREFIX,
    PRODUCTION,
    REASON_TMP_PREFIX,
    REJECTED,
    STAGING,
    Layout,
    parse_reason_file_name,
    parse_tmp_name,
    reason_file_name,
)
from servegate.model_store.locking import marker_is_live
from servegate.model_store.moves import hide_version_dir
from servegate.model_store.reading import Scan, entries, scan
from servegate.model_store.results import RecoveryReport

def remove_atomic_temp_files(layout: Layout, name: str, report: RecoveryReport) -> None:
    """All writers of the metadata files hold the lock, and we hold it now: their temp files are dead."""
    meta = layout.meta_dir(name)
    for entry in entries(meta):
        if entry.startswith(ATOMIC_TMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(meta / entry)
            report.actions.append(f"removed leftover temp file {meta / entry}")


def inflight_markers(layout: Layout, name: str) -> tuple[set[str], list[Path]]:
    """(tokens of live markers, whose temp dirs are being copied into; paths of dead markers)."""
    inflight = layout.inflight_dir(name)
    live: set[str] = set()
    dead: list[Path] = []
    for entry in entries(inflight):
        if marker_is_live(inflight / entry):
            live.add(entry)
        else:
            dead.append(inflight / entry)
    return live, dead


def remove_dead_temp_entries(layout: Layout, name: str, live_tokens: set[str], dead_markers: list[Path],
                             report: RecoveryReport) -> None:
    """Temp entries beside the versions in every area, except those of live copies; then the dead markers."""
    for area in AREAS:
        base = layout.base_path(area, name)
        for entry in entries(base):
            parsed = parse_tmp_name(entry)
            if parsed is None and entry.startswith(REASON_TMP_PREFIX):
                pass  # a reason file's temp file: written under the lock, so its writer is dead
            elif parsed is None or parsed.token in live_tokens:
                continue
            fsutil.remove_tree(base / entry)
            report.actions.append(f"removed leftover temp entry {base / entry}")
    for marker in dead_markers:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def resolve_versions_in_two_areas(scanned: Scan, report: RecoveryReport) -> None:
    """Keep one copy of a version found in two areas (see the module docstring); updates ``scanned``."""
    for version in sorted(set().union(*scanned.values())):
        where = [area for area in AREAS if version in scanned[area]]
        if len(where) < 2:
            continue
        keep = PRODUCTION if PRODUCTION in where else STAGING
        for area in where:
            if area == keep:
                continue
            loser, winner = scanned[area][version], scanned[keep][version]
            if fsutil.tree_digest(loser) != fsutil.tree_digest(winner):
                report.actions.append(f"left version {version} in both {winner} and {loser}: "
                                      "their contents differ (resolve by hand)")
                continue
            hidden = hide_version_dir(loser, version)
            if area == REJECTED:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(loser.parent / reason_file_name(version))
            fsutil.remove_tree(hidden)
            del scanned[area][version]
            report.actions.append(f"removed {loser}: version {version} is complete in {winner} "
                                  "(a move between filesystems was cut short)")


def remove_orphan_reason_files(layout: Layout, name: str, scanned: Scan, report: RecoveryReport) -> None:
    rejected_base = layout.base_path(REJECTED, name)
    for entry in entries(rejected_base):
        version = parse_reason_file_name(entry)
        if version is not None and version not in scanned[REJECTED]:
            os.unlink(rejected_base / entry)
            report.actions.append(f"removed orphan reason file {rejected_base / entry}")


def _unrecorded_reason(version: int, recorded: str | None, now: str | None, known: bool) -> str:
    if now is None:
        return f"version {version} is gone from {recorded} (removed outside servegate)"
    if not known:
        return f"found in {now} with no history (made outside servegate, or its record was lost)"
    if recorded is None:
        return f"reappeared in {now} (restored outside servegate)"
    return f"found in {now} after a crash (its history line was lost)"


def record_lost_history(layout: Layout, name: str, scanned: Scan, report: RecoveryReport,
                        moving: set[int] = frozenset()) -> None:
    """A ``recover`` line for each version whose area is not the one its last history line names.

    It runs after the intents were settled, so what is left was not done by a servegate move;
    ``moving``: versions a change of this process is moving now (it writes their lines).
    """
    history_file = layout.history_file(name)
    last_area: dict[int, str | None] = {}
    for record in history_mod.read(history_file):
        if isinstance(record.version, int):
            last_area[record.version] = record.to_area
    actual = {v: area for area in AREAS for v in scanned[area]}
    for version in sorted(set(last_area) | set(actual)):
        recorded, now = last_area.get(version), actual.get(version)
        if recorded == now or version in moving:
            continue
        reason = _unrecorded_reason(version, recorded, now, version in last_area)
        history_mod.record_transition(history_file, name, version, recorded, now, operation="recover",
                                      reason=reason)
        report.actions.append(f"history: version {version} {recorded} -> {now} ({reason})")


def recover_locked(layout: Layout, name: str) -> RecoveryReport:
    """Steps 1-7 of the module docstring; the caller holds the model lock."""
    report = RecoveryReport(name)
    remove_atomic_temp_files(layout, name, report)
    live_tokens, dead_markers = inflight_markers(layout, name)
    remove_dead_temp_entries(layout, name, live_tokens, dead_markers, report)
    scanned = scan(layout, name)
    resolve_versions_in_two_areas(scanned, report)
    remove_orphan_reason_files(layout, name, scanned, report)
    moving = intents.complete_interrupted(layout, name, scanned, report)
    record_lost_history(layout, name, scanned, report, moving)
    fsutil.checkpoint("recover:done")
    return report
