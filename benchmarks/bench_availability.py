"""Availability of production while the pipeline promotes a version and then rolls it back.

Setup: version 1 of a tiny Keras regressor in a fresh store, a production
bundled server (``python -m servegate.serving``) on ``production/<name>``
polling every 0.2 s, and a second process sending one-row REST predict
requests at a steady pace (:data:`LOAD_SCRIPT`), each recorded with its
start time, latency and outcome.

While the load runs: ``servegate deploy --production-url`` promotes version 2
(and waits until the production server serves it), then
``servegate rollback`` puts version 1 back. A request is "during the swap"
when it started inside a window around a transition: from the moment the
store's history says the promotion (or rollback) took the lock until
:data:`SWAP_WINDOW_S` seconds after it completed (the server's poll, loading
the new version and unloading the old one all fall inside it).

Figures: failed requests during the whole run (goal: 0), and p99 latency
during the swap windows over p99 outside them (goal <= 5: a swap loads a
TensorFlow model on the same two cores that answer the requests, so some
cost is expected; an outage would show as failures or seconds-long p99s).
The test ``tests/reliability/test_availability.py`` runs the same
measurement and asserts zero failures only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import Figure
from servegate.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SWAP_WINDOW_S = 3.0
NAME = "avail"

LOAD_SCRIPT = r'''
import json, os, sys, time
import requests
url, stop_file, out, rate, max_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
body = json.dumps({"instances": [[0.1, 0.2, 0.3, 0.4]]})
session = requests.Session()
records = []
started = time.time()
interval = 1.0 / rate
next_at = time.monotonic()
open(out + ".ready", "w").close()
while not os.path.exists(stop_file) and time.time() - started < max_s:
    t0 = time.time(); m0 = time.perf_counter()
    try:
        r = session.post(url, data=body, timeout=10)
        ok = r.status_code == 200 and "predictions" in r.json()
        err = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
    except Exception as exc:
        ok, err = False, f"{type(exc).__name__}: {exc}"[:300]
    records.append([t0, time.perf_counter() - m0, ok, err])
    next_at += interval
    time.sleep(max(0.0, next_at - time.monotonic()))
json.dump(records, open(out, "w"))
'''


@dataclass
class SwapMeasurement:
    """Every request the load process sent, and the swap windows (epoch seconds)."""

    records: list = field(default_factory=list)       # [start_epoch, latency_s, ok, error]
    windows: list = field(default_factory=list)       # [(from_epoch, to_epoch)]
    served_during: list = field(default_factory=list)  # versions the server served after each step

    @property
    def failures(self) -> list:
        return [r for r in self.records if not r[2]]

    def _in_swap(self, t: float) -> bool:
        return any(a <= t <= b for a, b in self.windows)

    def latencies(self, during_swap: bool) -> list[float]:
        return [r[1] for r in self.records if r[2] and self._in_swap(r[0]) == during_swap]

    @staticmethod
    def p99(values: list[float]) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _served(rest_url: str, name: str) -> list[int]:
    import requests

    r = requests.get(f"{rest_url}/v1/models/{name}", timeout=5)
    return sorted(int(s["version"]) for s in r.json()["model_version_status"] if s["state"] == "AVAILABLE")


def _wait_served(rest_url: str, name: str, wanted: list[int], timeout: float, proc=None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"production server exited with {proc.returncode}")
        try:
            last = _served(rest_url, name)
            if last == wanted:
                return
        except Exception as exc:  # not up yet
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"production server did not serve {wanted} of {name!r} within {timeout} s (last: {last})")


def make_model_files(out: Path) -> tuple[Path, Path, Path]:
    """A tiny Keras regressor (.keras), the same exported by servegate as a SavedModel, and a Parquet reference."""
    import numpy as np
    import pandas as pd

    from servegate.export import export_model
    from tests import modelzoo

    model = modelzoo.regressor(seed=0)
    model.save(out / "model.keras")
    # servegate's own export: version 1 must carry the output names a deploy of this file gives
    # version 2, or the contract check rejects the deploy for an output it renamed itself.
    export_model(out / "model.keras", out / "savedmodel")
    x = modelzoo.reference_inputs(64)
    y = np.asarray(model(x, training=False))[:, 0].astype("float64")
    pd.DataFrame({"features": [row.tolist() for row in x], "label": y}).to_parquet(out / "ref.parquet", index=False)
    return out / "model.keras", out / "savedmodel", out / "ref.parquet"


def measure_swap(work: Path, model_keras: Path, savedmodel: Path, reference: Path, *,
                 env: dict | None = None, rate: float = 50.0, steady_s: float = 3.0) -> SwapMeasurement:
    """Promote version 2 through ``servegate deploy`` and roll back through ``servegate rollback``
    while a second process loads the production server; every process is stopped before returning."""
    from servegate.model_store import ModelStore

    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    store_root = home / "store"
    env = dict(env or os.environ)
    env.update(SERVEGATE_HOME=str(home), SERVEGATE_STORE=str(store_root), TF_CPP_MIN_LOG_LEVEL="2",
               MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}", PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", TMPDIR=str(work))
    store = ModelStore(store_root)
    store.promote(NAME, store.stage(NAME, savedmodel))  # version 1, set up directly: not what is measured

    port = free_port()
    rest_url = f"http://127.0.0.1:{port}"
    server_log = open(work / "production-server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "servegate.serving", "--port=0", f"--rest_api_port={port}", f"--model_name={NAME}",
         f"--model_base_path={store_root / 'production' / NAME}", "--file_system_poll_wait_seconds=0.2"],
        stdout=server_log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    load = None
    stop_file, out = work / "stop-load", work / "load.json"
    measurement = SwapMeasurement()
    try:
        _wait_served(rest_url, NAME, [1], 120, server)
        load = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, f"{rest_url}/v1/models/{NAME}:predict",
                                 str(stop_file), str(out), str(rate), "600"], cwd=REPO_ROOT, env=env)
        while not Path(str(out) + ".ready").exists():
            if load.poll() is not None:
                raise RuntimeError(f"load process exited with {load.returncode}")
            time.sleep(0.05)
        time.sleep(steady_s)
        deploy = subprocess.run(
            [sys.executable, "-m", "servegate", "deploy", "--model", str(model_keras), "--name", NAME,
             "--reference", str(reference), "--production-url", rest_url, "--json"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        if deploy.returncode != 0:
            raise RuntimeError(f"servegate deploy exited {deploy.returncode}:\n{deploy.stderr[-3000:]}")
        measurement.served_during.append(_served(rest_url, NAME))
        time.sleep(steady_s)
        rollback = subprocess.run([sys.executable, "-m", "servegate", "rollback", "--name", NAME],
                                  cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        if rollback.returncode != 0:
            raise RuntimeError(f"servegate rollback exited {rollback.returncode}:\n{rollback.stderr[-3000:]}")
        _wait_served(rest_url, NAME, [1], 60, server)
        measurement.served_during.append(_served(rest_url, NAME))
        time.sleep(steady_s)
    finally:
        stop_file.touch()
        if load is not None:
            try:
                load.wait(30)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait(10)
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        server_log.close()
    measurement.records = json.loads(out.read_text())
    for record in store.history(NAME):
        if (record.operation == "promote" and record.version != 1) or record.operation == "rollback":
            begin = _epoch(record.started or record.time)
            measurement.windows.append((begin, _epoch(record.time) + SWAP_WINDOW_S))
    return measurement


def run(quick: bool = False) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-availability-") as tmp:
        work = Path(tmp)
        keras_file, savedmodel, reference = make_model_files(work)
        m = measure_swap(work / "swap", keras_file, savedmodel, reference, rate=40.0 if quick else 80.0,
                         steady_s=3.0 if quick else 8.0)
    during, outside = m.latencies(True), m.latencies(False)
    p99_during, p99_outside = m.p99(during) * 1e3, m.p99(outside) * 1e3
    detail = {
        "requests": len(m.records), "failed": len(m.failures), "requests_during_swap": len(during),
        "p99_during_swap_ms": round(p99_during, 2), "p99_outside_ms": round(p99_outside, 2),
        "served_after_promote": m.served_during[0] if m.served_during else None,
        "served_after_rollback": m.served_during[1] if len(m.served_during) > 1 else None,
        "swap_windows_s": [round(b - a, 2) for a, b in m.windows],
        "first_failures": [r[3] for r in m.failures[:3]],
    }
    return [
        Figure("availability: failed requests during promote+rollback", float(len(m.failures)), 0.0,
               detail=detail),
        Figure("availability: p99 during swap / p99 outside", p99_during / p99_outside, 5.0, detail=detail),
    ]


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(figure.line())
        print("   ", json.dumps(figure.detail))
