"""Measure a command and every process it starts: wall time, CPU seconds, peak memory.

- CPU: this process becomes a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``),
  so the command's orphans (servers it started and left to end on their own)
  are re-parented here and reaped; ``getrusage(RUSAGE_CHILDREN)`` before and
  after then counts the CPU of every process of the command, exactly.
- Memory: a thread samples ``/proc`` every :data:`SAMPLE_S` and sums the RSS of
  the command's process tree (root, descendants, and its orphans re-parented here); the
  peak is the largest sum seen. A sum of RSS counts shared pages once per
  process, as ``ps`` would.

:func:`tree_sampler` samples an already running process's descendants (a
Prefect worker's flow-run processes), for paths where the command is not ours.
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_S = 0.2
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")
_PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Usage:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""

    def figures(self) -> dict:
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2), "peak_mib": round(self.peak_rss_mib)}


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, cpu ticks, rss pages) of ``pid``; None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21])


@dataclass
class TreeSampler:
    """Samples the RSS sum and per-process CPU of ``root``'s descendants (``include_root``: and root)."""

    root: int
    include_root: bool = True
    adopted_except: set[int] | None = None  # also the processes re-parented here, except these children
    peak_rss: int = 0
    cpu_ticks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                found = _stat(int(entry))
                if found is not None:
                    stats[int(entry)] = found
        tree, frontier = set(), {self.root}
        if self.adopted_except is not None:  # orphans of the command, re-parented to this (subreaper) process
            me = os.getpid()
            frontier |= {pid for pid, (ppid, _, _) in stats.items() if ppid == me and pid not in self.adopted_except}
        while frontier:  # descendants by parent pid
            tree |= frontier
            frontier = {pid for pid, (ppid, _, _) in stats.items() if ppid in frontier and pid not in tree}
        if not self.include_root:
            tree.discard(self.root)
        self.peak_rss = max(self.peak_rss, sum(stats[p][2] for p in tree if p in stats) * _PAGE)
        for pid in tree:
            if pid in stats:
                self.cpu_ticks[pid] = stats[pid][1]

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def start(self) -> "TreeSampler":
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tree-sampler")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_rss / 2**20

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_ticks.values()) / _TICK


def _become_subreaper() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children() -> set[int]:
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] == me:
                found.add(int(entry))
    return found


def _reap_orphans(ours_before: set[int], timeout_s: float) -> None:
    """Wait for the command's leftover processes (re-parented here) to end, and reap them; the
    children this process had before (a Prefect server, a worker) are left alone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        orphans = _children() - ours_before
        if not orphans:
            return
        for pid in orphans:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)


def measure(argv: list[str], *, env: dict | None = None, cwd: Path | None = None, orphans_s: float = 30) -> Usage:
    """Run ``argv`` to its end (and its orphans to theirs); its output is captured as text."""
    _become_subreaper()
    ours_before = _children()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid, adopted_except=ours_before).start()
    sampler.sample()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    sampler.sample()
    _reap_orphans(ours_before, orphans_s)
    sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Usage(wall, cpu, sampler.peak_mib, proc.returncode, stdout, stderr)
