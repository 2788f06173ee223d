"""What the logs of servers and workers a test started must not hold: tracebacks and errors."""

from __future__ import annotations

import re

_PROBLEM = re.compile(r"Traceback \(most recent call last\)|\| ERROR +\||database is locked|sqlalchemy\.exc\.")
# Where a log entry starts: Prefect's "HH:MM:SS.fff |", gunicorn's "[YYYY-MM-DD ...", MLflow's "YYYY/MM/DD ...".
_ENTRY_START = re.compile(r"^(\d\d:\d\d:\d\d\.\d+ \||\[?\d{4}[-/]\d\d[-/]\d\d)")


def entries(log: str) -> list[str]:
    """The log split into entries: a timestamped line and the lines (a traceback) up to the next one."""
    found: list[list[str]] = []
    for line in log.splitlines():
        if _ENTRY_START.match(line) or not found:
            found.append([line])
        else:
            found[-1].append(line)
    return ["\n".join(entry) for entry in found]


def problems(log: str, context: int = 14) -> list[str]:
    """Each log entry with a traceback or an error, from the line before the first sign of it: what a
    test failure shows."""
    found = []
    for entry in entries(log):
        lines = entry.splitlines()
        hit = next((i for i, line in enumerate(lines) if _PROBLEM.search(line)), None)
        if hit is not None:
            start = max(0, hit - 1)
            found.append("\n".join(lines[start:start + context]))
    return found


def tracebacks(text: str) -> list[str]:
    """Each traceback in ``text``, from its first line to the exception line (the first unindented one).

    For worker logs: a rejected deploy's task ends Failed (named "Rejected"), which Prefect logs at ERROR by
    design, so only tracebacks count there."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" in line:
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")),
                       len(lines) - 1)
            found.append("\n".join(lines[i:end + 1]))
    return found
