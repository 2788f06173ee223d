"""Process identity on Linux: a pid plus its start time, so that a recycled pid is never mistaken for ours.

Pid files and container labels record ``(pid, start_ticks)``; a process is
"the same one" only while both match. ``start_ticks`` is field 22 of
``/proc/<pid>/stat`` (clock ticks since boot), stable for a process's life.
"""

from __future__ import annotations

import os
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    state = fields[0]
    if state in ("Z", "X"):  # a zombie is dead for our purposes
        return None
    return int(fields[19])


def is_alive(pid: int, ticks: int | None) -> bool:
    """True while the process ``pid`` started at ``ticks`` still runs (any start time when ticks is None)."""
    current = start_ticks(pid)
    if current is None:
        return False
    return ticks is None or current == ticks


def group_exists(pgid: int) -> bool:
    """True while any process is in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
