"""When the CLI's MLflow helper starts: once the deploy's other starting processes are idle, or at the preflight's end.

The helper's MLflow import costs about 2.4 CPU-s and needs a core. During a
deploy's first seconds both cores are taken: the export on one, the local
Prefect server's and the spare canary's starts on the other; an import beside
them slowed the export by as much as it saved (docs/performance.md). A long
export (a large model) outlasts those starts, and the second core then idles
for the rest of it while the helper waits for the preflight's end. So a
watcher thread launches the helper as soon as every child process of this
one is idle (asleep, and no CPU time used over a sampling window: their
starts are done) and the machine has a core to spare (other work on it would
otherwise take the helper's core from the export: measured, docs/performance.md),
and the preflight's end launches it if the watcher did not.

Only MLflow's import runs early: the store is opened once the inputs passed
(:func:`servegate.deploy.resources.open_tracker_soon`), so a refused input
still leaves no MLflow store behind. The helper ends when the thread that
launched it ends (Linux's parent-death signal, :mod:`servegate.tracking.helper`):
a watcher that launched it therefore stays parked until the process exits.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from servegate.deploy import resources

SAMPLE_S = 0.25   # between two looks at the children
IDLE_CPU_S = 0.02  # CPU time a child may use in one window and still count as idle (timers, a heartbeat)
IDLE_WINDOWS = 2   # consecutive idle windows needed: a start that paused on a disk read is not done
SPARE_CORES = 0.6  # idle CPU the whole machine must have had in a window (in cores) for the helper's import
WATCHER = "watcher"


def _children() -> dict[int, tuple[str, float]]:
    """This process's children: pid -> (state letter, CPU seconds so far). Empty where /proc is missing."""
    found: dict[int, tuple[str, float]] = {}
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return found
    tick = os.sysconf("SC_CLK_TCK")
    for task in tasks:
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue  # it ended meanwhile
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
            found[int(pid)] = (fields[0], (int(fields[11]) + int(fields[12])) / tick)
    return found


def _machine_times() -> tuple[float, float]:
    """(idle, total) CPU time of the whole machine so far, in clock ticks (/proc/stat's first line)."""
    try:
        with open("/proc/stat") as stat:
            values = [float(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    return values[3] + values[4], sum(values[:8])  # idle + iowait; user..steal


def spare_cores(before: tuple[float, float], after: tuple[float, float], cores: int) -> float:
    """How many cores stood idle between two :func:`_machine_times` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * cores if total > 0 else 0.0


def children_are_idle(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> bool:
    """Whether every child in ``after`` is asleep and used at most :data:`IDLE_CPU_S` since ``before``."""
    for pid, (state, cpu_s) in after.items():
        if state in ("R", "D") or pid not in before or cpu_s - before[pid][1] > IDLE_CPU_S:
            return False
    return True


@dataclass
class HelperStarter:
    """Launches the helper for ``tracking_uri`` once: by the watcher thread, or by :meth:`now`."""

    tracking_uri: str | None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    launched_by: str | None = None  # WATCHER or "preflight's end"

    def start_watching(self) -> None:
        if _children_readable():
            threading.Thread(target=self._watch, name="servegate-helper-start", daemon=True).start()

    def stop_watching(self) -> None:
        """The preflight ended (passed or refused): the watcher launches nothing from now on."""
        with self._lock:  # a launch by the watcher is either done or never happens
            self._stop.set()

    def now(self) -> None:
        """The preflight passed: launch the helper now if the watcher has not."""
        self.stop_watching()
        self._launch("preflight's end")

    def _launch(self, by: str) -> bool:
        with self._lock:
            if by == WATCHER and self._stop.is_set():
                return False
            if self.launched_by is not None or resources.tracks_in_helper(self.tracking_uri):
                return False
            resources.start_tracker_helper(self.tracking_uri)
            self.launched_by = by
            return True

    def _watch(self) -> None:
        before, machine, idle = _children(), _machine_times(), 0
        cores = os.cpu_count() or 1
        while not self._stop.wait(SAMPLE_S):
            after, machine_after = _children(), _machine_times()
            quiet = children_are_idle(before, after) and spare_cores(machine, machine_after, cores) >= SPARE_CORES
            idle = idle + 1 if quiet else 0
            before, machine = after, machine_after
            if idle >= IDLE_WINDOWS:
                if self._launch(WATCHER):
                    threading.Event().wait()  # the helper ends with the thread that launched it: park here
                return


def _children_readable() -> bool:
    return Path(f"/proc/self/task/{threading.get_native_id()}/children").exists()
