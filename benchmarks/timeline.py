"""The critical path of one ``servegate deploy`` as a timeline of its processes (docs/performance.md).

    python -m benchmarks.timeline [--same-work] [--large]

Runs one deploy of the demo model (or, with ``--same-work``, the hand-written
script of :mod:`benchmarks.same_work`; with ``--large``, of the ResNet50 at
64x64 that ``BENCH_DEPLOY_LARGE=1`` benchmarks) and samples ``/proc`` every 50 ms: for
each process of the tree, when it was first and last seen (seconds from the
command's start), its CPU seconds and what it is. With the deploy's JSON
``phases`` (the CLI process's own phases) this is both cores' timeline. Not a
benchmark with a goal: a picture of where the wall time goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.proctree import _PAGE, _TICK, _stat

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Seen:
    pid: int
    what: str
    first_s: float
    last_s: float
    cpu_s: float = 0.0
    peak_mib: float = 0.0


def _what(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    names = {"uvicorn": "Prefect server", "servegate.serving.server.spare": "canary (spare bundled server)",
             "servegate.serving": "canary (bundled server)", "servegate.tracking.helper": "MLflow helper",
             "same_work.py": "same-work script", "servegate": "servegate deploy (CLI)"}
    for marker, name in names.items():  # the first that matches: the more specific first
        if any(marker in w for w in words):
            return name
    return " ".join(words)[:60]


def _sample(root: int, started: float, seen: dict[int, Seen]) -> None:
    stats = {int(e): s for e in os.listdir("/proc") if e.isdigit() and (s := _stat(int(e))) is not None}
    tree, frontier = set(), {root}
    me = os.getpid()
    frontier |= {pid for pid, (ppid, _, _) in stats.items() if ppid == me}  # orphans adopted by the subreaper
    while frontier:
        tree |= frontier
        frontier = {pid for pid, (ppid, _, _) in stats.items() if ppid in frontier and pid not in tree}
    now = time.perf_counter() - started
    for pid in tree & stats.keys():
        entry = seen.get(pid)
        if entry is None:
            entry = seen[pid] = Seen(pid, _what(pid), now, now)
        entry.last_s, entry.cpu_s = now, stats[pid][1] / _TICK
        entry.peak_mib = max(entry.peak_mib, stats[pid][2] * _PAGE / 2**20)
        if pid != root and (what := _what(pid)) not in ("?", ""):  # a fork is named once it exec'd
            entry.what = what


def trace(argv: list[str], env: dict) -> tuple[list[Seen], str, float]:
    from benchmarks.proctree import _become_subreaper

    _become_subreaper()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen: dict[int, Seen] = {}
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            _sample(proc.pid, started, seen)
            time.sleep(0.05)

    sampler = threading.Thread(target=loop, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - started
    deadline = time.monotonic() + 30
    while any(e.last_s > wall - 0.2 and e.pid != proc.pid for e in seen.values()) and time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not [p for p in seen if p != proc.pid and _stat(p) is not None]:
            break
        time.sleep(0.05)
    stop.set()
    sampler.join()
    return sorted(seen.values(), key=lambda e: e.first_s), stdout, wall


def main(argv: list[str]) -> int:
    from servegate.demo.model import write_variant
    from servegate.tracking import Tracker

    root = Path(tempfile.mkdtemp(prefix="timeline-"))
    if "--large" in argv:
        from benchmarks.bench_deploy import _large_model

        (root / "models").mkdir()
        model_path, reference_path = _large_model(root / "models")
    else:
        files = write_variant("baseline", root / "models")
        model_path, reference_path = files.model_path, files.reference_path
    home = root / "home"
    env = dict(os.environ, SERVEGATE_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")
    Tracker(env["MLFLOW_TRACKING_URI"])
    if "--same-work" in argv:
        command = [sys.executable, str(REPO_ROOT / "benchmarks" / "same_work.py"), str(model_path),
                   str(reference_path), str(root / "staging"), str(root / "production"), "bench"]
    else:
        command = [sys.executable, "-m", "servegate", "deploy", "--model", str(model_path), "--name", "bench",
                   "--reference", str(reference_path), "--store", str(root / "store"), "--json"]
    processes, stdout, wall = trace(command, env)
    print(f"wall {wall:.2f} s; load average {os.getloadavg()}")
    for e in processes:
        if e.cpu_s >= 0.05:
            print(f"{e.first_s:6.2f} -> {e.last_s:6.2f} s  {e.cpu_s:5.2f} CPU-s  {e.peak_mib:6.0f} MiB  {e.what}")
    try:
        outcome = json.loads(stdout)
        print("phases", outcome.get("phases"))
        print("timings", outcome.get("timings"))
    except ValueError:
        print(stdout[-300:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
