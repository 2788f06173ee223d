"""Canary boot to AVAILABLE, process and docker runners, against loading the model in a fresh Python.

Baseline: a fresh subprocess that does ``import tensorflow`` and
``tf.saved_model.load`` of the same SavedModel (the least any model server in
Python must do). Measured: ``runner.start()`` until ``wait_until_available``
returns, for the process runner (bundled server) and the docker runner (the
registry-free local image). Runs are interleaved (baseline, process, docker,
baseline, ...) so that machine load affects all three alike; medians are
compared. Goals: process <= 1.5x, docker <= 2x the baseline.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure

REPO_ROOT = Path(__file__).resolve().parents[1]
_BASELINE = "import sys, tensorflow as tf; tf.saved_model.load(sys.argv[1])"
_EXPORT = ("import sys; from tests import modelzoo; "
           "modelzoo.export(modelzoo.regressor(), sys.argv[1])")


def _baseline_s(model: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _BASELINE, str(model)], check=True, cwd=REPO_ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _boot_s(make) -> float:
    runner = make()
    try:
        started = time.perf_counter()
        runner.start()
        runner.wait_until_available(180)
        return time.perf_counter() - started
    finally:
        runner.stop()


def _docker_client():
    try:
        from servegate.serving.runners.docker import connect

        return connect()
    except Exception as exc:  # DockerUnavailableError: measure what can be measured, say why not the rest
        print(f"# canary_boot: docker runner not measured: {exc}", flush=True)
        return None


def run(quick: bool = False) -> list[Figure]:
    from servegate.serving.runners import CanarySpec, ProcessRunner
    from servegate.serving.runners.docker import DockerRunner
    from servegate.serving.runners.image import ensure_local_image

    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-canary-boot-") as tmp:
        os.environ.setdefault("SERVEGATE_HOME", str(Path(tmp) / "home"))
        model = Path(tmp) / "tiny" / "1"
        subprocess.run([sys.executable, "-c", _EXPORT, str(model)], check=True, cwd=REPO_ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spec = CanarySpec("bench", {1: model})
        client = _docker_client()
        image = ensure_local_image(client=client) if client is not None else None

        times: dict[str, list[float]] = {"baseline": [], "process": [], "docker": []}
        _baseline_s(model)  # warm the page cache for everyone, unmeasured
        for _ in range(rounds):
            times["baseline"].append(_baseline_s(model))
            times["process"].append(_boot_s(lambda: ProcessRunner(spec)))
            if client is not None:
                times["docker"].append(_boot_s(lambda: DockerRunner(spec, image=image, client=client)))

    base = statistics.median(times["baseline"])
    figures = []
    for kind, goal in (("process", 1.5), ("docker", 2.0)):
        if not times[kind]:
            continue
        median = statistics.median(times[kind])
        figures.append(Figure(
            name=f"canary boot to AVAILABLE, {kind} runner vs TF load",
            ratio=median / base, goal=goal,
            detail={"runner_s": times[kind], "baseline_s": times["baseline"], "runner_median_s": median,
                    "baseline_median_s": base, "rounds": rounds}))
    return figures
