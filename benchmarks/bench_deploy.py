"""``servegate deploy`` against the same work done by hand, and against the floor, side by side in one run.

Two baselines, each run alternately with the deploy in every round:

- the **same-work script** (:mod:`benchmarks.same_work`): what a user would
  write by hand to do the deploy's work, with no orchestration, tracking or
  report: export, stage the next numbered version, boot the bundled server on
  it, predict the reference rows over REST, compare with in-process
  predictions, rename into production. Goals: wall <= 1.2x (demo model),
  <= 1.3x (ResNet50); peak memory <= 1.5x.
- the **floor** (:data:`FLOOR`): the least any deploy of a ``.keras`` file
  must do: one Python process that imports TensorFlow, loads the same file and
  exports the SavedModel. Goal: wall <= 2.0x.

Measured for all, whole process trees (:mod:`benchmarks.proctree`): wall time,
CPU seconds (every process, orphans included) and peak memory (the sum of the
RSS of all their processes, sampled).

- ``servegate deploy --json`` in a fresh process, on its defaults (local
  Prefect server, MLflow in a SQLite file whose tables already exist, the
  bundled server as canary), of the demo model.
- ``BENCH_DEPLOY_LARGE=1``: also a ~100 MB model (ResNet50, random weights,
  64x64x3 inputs), where export dominates.
- ``BENCH_DEPLOY_WORKER=1``: also prefect.yaml's ``deploy-model`` deployment
  on a real ``prefect server start`` + ``prefect worker start`` (a fresh HOME,
  started as docs/deploying-with-prefect.md says, polling every second, as
  tests/flows/test_prefect_worker.py runs it), ``prefect deployment run
  --watch`` of the demo model, timed against the CLI deploy of the same model
  in the same round. Goal: at most the CLI deploy + 5 s (the figure is the
  median of worker / (CLI + 5 s), goal <= 1). ``BENCH_DEPLOY_WORKER_QUERY_SECONDS``
  starts the worker with another poll interval (10: Prefect's default).
  Memory: the worker's flow-run processes.

- ``BENCH_DEPLOY_SERVER=1``: also ``servegate deploy`` pointed at a running
  ``prefect server start`` and ``mlflow server`` (:mod:`benchmarks.services`:
  started before the timing, as a team's servers or a CI job's service
  containers are), so no local Prefect server and no MLflow SQLite store start
  per deploy; against the same round's same-work script and floor, for every
  model measured (goals as above). The servers' own CPU is not counted: they
  are not the deploy's processes.

The options are off by default because they double the benchmark's time
(ResNet50's export alone is about a minute on a loaded 2-core machine; the
worker path starts a Prefect server first). An untimed floor run first warms
the page cache; then rounds alternate (floor, same work, deploy, [worker],
[the deploy on the running servers]; 3 rounds, 1 with --quick), and a figure is the
median over rounds of each round's ratio.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from benchmarks.harness import Figure
from benchmarks.proctree import TreeSampler, Usage, measure

REPO_ROOT = Path(__file__).resolve().parents[1]

FLOOR = r'''
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow, keras
keras.saving.load_model(sys.argv[1], compile=False).export(sys.argv[2], format="tf_saved_model", verbose=False)
'''


def _env(home: Path) -> dict:
    return dict(os.environ, SERVEGATE_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")


def _floor(model: Path, work: Path) -> Usage:
    usage = measure([sys.executable, "-c", FLOOR, str(model), str(work / "floor-export")], cwd=REPO_ROOT)
    if usage.returncode != 0:
        raise RuntimeError(f"floor exited {usage.returncode}: {usage.stderr[-2000:]}")
    shutil.rmtree(work / "floor-export", ignore_errors=True)
    return usage


def _same_work(model: Path, reference: Path, work: Path, name: str) -> Usage:
    """The hand-written script (:mod:`benchmarks.same_work`) into its own staging and production roots."""
    roots = [work / "same-work" / "staging", work / "same-work" / "production"]
    usage = measure([sys.executable, str(REPO_ROOT / "benchmarks" / "same_work.py"), str(model), str(reference),
                     *map(str, roots), name], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), cwd=REPO_ROOT)
    if usage.returncode != 0:
        raise RuntimeError(f"same-work script exited {usage.returncode}: {usage.stdout[-500:]} {usage.stderr[-2000:]}")
    return usage


def _deploy(model: Path, reference: Path, home: Path, stores: Path, name: str,
            services: dict | None = None) -> tuple[Usage, dict]:
    """One deploy into a new store under ``stores``: a first deployment, as the same-work script's is.
    With production serving a version, the deploy would also run the regression check on the canary
    (the production version loaded and answering beside the candidate), work the script does not do."""
    env = {**_env(home), **(services or {})}
    stores.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="store-", dir=stores))
    usage = measure([sys.executable, "-m", "servegate", "deploy", "--model", str(model), "--name", name,
                     "--reference", str(reference), "--store", str(store), "--json"],
                    env=env, cwd=REPO_ROOT)
    if usage.returncode != 0:
        raise RuntimeError(f"servegate deploy exited {usage.returncode}: {usage.stderr[-2000:]}")
    return usage, json.loads(usage.stdout)


def _large_model(out: Path) -> tuple[Path, Path]:
    """ResNet50 (random weights: nothing is downloaded), input ``features`` 64x64x3, and a 32-row reference."""
    import keras
    import numpy as np
    import pandas as pd

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3), name="features")
    outputs = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))(inputs)
    model_path = out / "resnet50.keras"
    keras.Model(inputs, outputs).save(model_path)
    rows = np.random.default_rng(0).random((32, 64 * 64 * 3), dtype="float32")
    reference = out / "resnet50-reference.parquet"
    pd.DataFrame({"features": list(rows)}).to_parquet(reference, index=False)
    return model_path, reference


def _summary(usages: list[Usage]) -> dict:
    return {"wall_s": [round(u.wall_s, 1) for u in usages], "cpu_s": [round(u.cpu_s, 1) for u in usages],
            "peak_mib": [round(u.peak_rss_mib) for u in usages]}


def _ratios(ours: list[Usage], baseline: list[Usage]) -> dict:
    """The median over rounds of each round's ratio: a round's runs are side by side, so a
    machine slowed for a while (other work, a cold page cache) slows both and cancels out."""
    def paired(key):
        return statistics.median(getattr(o, key) / getattr(b, key) for o, b in zip(ours, baseline))

    return {key: round(paired(key), 2) for key in ("wall_s", "cpu_s", "peak_rss_mib")}


@dataclass
class _Runs:
    """One model's rounds: the floor, the same-work script and the deploy, side by side."""

    floor: list[Usage] = field(default_factory=list)
    same: list[Usage] = field(default_factory=list)
    ours: list[Usage] = field(default_factory=list)
    outcomes: list[dict] = field(default_factory=list)
    on_services: list[Usage] = field(default_factory=list)  # the deploy pointed at running servers
    services_outcomes: list[dict] = field(default_factory=list)

    def round(self, model: Path, reference: Path, root: Path, name: str, services: dict | None = None) -> None:
        self.floor.append(_floor(model, root))
        self.same.append(_same_work(model, reference, root, name))
        usage, outcome = _deploy(model, reference, root / "home", root / "stores", name)
        self.ours.append(usage)
        self.outcomes.append(outcome)
        if services is not None:
            usage, outcome = _deploy(model, reference, root / "home", root / "stores", name, services)
            self.on_services.append(usage)
            self.services_outcomes.append(outcome)


def _deploy_figures(title: str, same_goal: float, runs: _Runs) -> list[Figure]:
    """deploy / same work (wall and peak memory) and deploy / floor (wall), each with its goal; the same
    two wall ratios for the deploy on running servers when it was measured."""
    figures = _side_figures(title, same_goal, runs.ours, runs.outcomes, runs)
    figures.insert(1, Figure(f"{title}: deploy / same work, peak memory",
                             _ratios(runs.ours, runs.same)["peak_rss_mib"], 1.5))
    if runs.on_services:
        figures += _side_figures(f"{title}, running Prefect and MLflow servers", same_goal, runs.on_services,
                                 runs.services_outcomes, runs)
    return figures


def _side_figures(title: str, same_goal: float, ours: list[Usage], outcomes: list[dict], runs: _Runs) -> list[Figure]:
    vs_same, vs_floor = _ratios(ours, runs.same), _ratios(ours, runs.floor)
    last = outcomes[-1]
    detail = {"ratios_vs_same_work": vs_same, "ratios_vs_floor": vs_floor, "servegate": _summary(ours),
              "same_work": _summary(runs.same), "floor": _summary(runs.floor),
              "load_average": os.getloadavg(),
              "servegate_startup_s": [o.get("startup_s") for o in outcomes],
              "servegate_phases_s": [o.get("phases") for o in outcomes], "servegate_steps_s": last["timings"]}
    print(f"# {title}: vs same work {vs_same}; vs floor {vs_floor}; servegate {detail['servegate']}; "
          f"same work {detail['same_work']}; floor {detail['floor']}; load {detail['load_average']}; "
          f"phases {detail['servegate_phases_s']}; steps of the last {last['timings']}", flush=True)
    return [Figure(f"{title}: deploy / same work, wall", vs_same["wall_s"], same_goal, detail=detail),
            Figure(f"{title}: deploy / floor, wall", vs_floor["wall_s"], 2.0)]


class _Worker:
    """prefect.yaml's deploy-model on ``prefect server start`` + ``prefect worker start`` in a fresh HOME."""

    def __init__(self, home: Path):
        sys.path.insert(0, str(REPO_ROOT))
        from tests.support.prefect_stack import PREFECT, PrefectStack

        self.prefect = PREFECT
        home.mkdir(parents=True, exist_ok=True)
        self.stack = PrefectStack(home=home)
        self.stack.start_server()
        self.stack.register("deploy-model")
        query_seconds = os.environ.get("BENCH_DEPLOY_WORKER_QUERY_SECONDS")
        self.stack.start_worker(*([query_seconds] if query_seconds else []))
        from servegate.tracking import Tracker

        Tracker(f"sqlite:///{home / '.servegate' / 'mlflow.db'}")  # tables exist, as for the CLI's runs

    def run(self, model: Path, reference: Path, name: str) -> tuple[Usage, dict]:
        sampler = TreeSampler(self.stack.worker.pid, include_root=False).start()
        started = time.perf_counter()
        done = subprocess.run(
            [self.prefect, "deployment", "run", "deploy-model/deploy-model", "-p", f"model_path={model}",
             "-p", f"name={name}", "-p", f"reference={reference}", "--watch", "--watch-timeout", "600"],
            env=self.stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=660)
        wall = time.perf_counter() - started
        sampler.stop()
        found = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        if done.returncode != 0 or not found:
            raise RuntimeError(f"prefect deployment run exited {done.returncode}: {done.stdout[-2000:]}")
        import httpx

        run = httpx.get(f"{self.stack.api}/flow_runs/{found.group(1)}", timeout=30).json()
        states = httpx.get(f"{self.stack.api}/flow_run_states/", params={"flow_run_id": found.group(1)},
                           timeout=30).json()
        created = datetime.fromisoformat(run["created"]).timestamp()
        # seconds from the run's creation: PENDING when the worker took it, RUNNING once its process
        # loaded the flow; the rest of the wall time is the `prefect deployment run` command's own
        timing = {"flow_run_s": run.get("total_run_time"), "wall_s": round(wall, 1),
                  **{state["type"].lower(): round(datetime.fromisoformat(state["timestamp"]).timestamp() - created, 1)
                     for state in states}}
        return Usage(wall, sampler.cpu_s, sampler.peak_mib), timing

    def close(self) -> None:
        self.stack.close()


def _worker_figure(cli: list[Usage], worker: list[Usage], timings: list[dict]) -> Figure:
    ratio = round(statistics.median(w.wall_s / (c.wall_s + 5) for w, c in zip(worker, cli)), 2)
    detail = {"worker_minus_cli_s": [round(w.wall_s - c.wall_s, 1) for w, c in zip(worker, cli)],
              "worker": _summary(worker), "cli": _summary(cli), "worker_runs": timings,
              "load_average": os.getloadavg()}
    print(f"# worker vs CLI + 5 s: {ratio}; {detail}", flush=True)
    return Figure("worker deployment run vs servegate deploy + 5 s (demo)", ratio, 1.0, detail=detail)


def run(quick: bool = False) -> list[Figure]:
    from servegate.demo.model import write_variant
    from servegate.tracking import Tracker

    rounds = 1 if quick else 3
    root = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    worker = services = None
    try:
        files = write_variant("baseline", root / "models")
        home = root / "home"
        Tracker(_env(home)["MLFLOW_TRACKING_URI"])  # create MLflow's tables before timing (a CI store has them)
        if os.environ.get("BENCH_DEPLOY_WORKER") == "1":
            worker = _Worker(root / "worker-home")
        if os.environ.get("BENCH_DEPLOY_SERVER") == "1":
            from benchmarks.services import RunningServices

            services = RunningServices(root / "services-home")
        services_env = services.env() if services is not None else None
        _floor(files.model_path, root)  # untimed: TensorFlow's files into the page cache for all sides
        demo, by_worker, worker_timings = _Runs(), [], []
        for i in range(rounds):
            demo.round(files.model_path, files.reference_path, root, "bench", services_env)
            if worker is not None:
                usage, timing = worker.run(files.model_path, files.reference_path, f"bench-{i}")  # a first deployment
                by_worker.append(usage)
                worker_timings.append(timing)
        figures = _deploy_figures("demo model", 1.2, demo)
        if worker is not None:
            figures.append(_worker_figure(demo.ours, by_worker, worker_timings))
        if os.environ.get("BENCH_DEPLOY_LARGE") == "1":
            model, reference = _large_model(root / "models")
            large = _Runs()
            for i in range(rounds):
                large.round(model, reference, root, "bench-large", services_env)
            figures += _deploy_figures("ResNet50, ~100 MB", 1.3, large)
        return figures
    finally:
        for stack in (worker, services):
            if stack is not None:
                stack.close()
        shutil.rmtree(root, ignore_errors=True)
