"""``servegate deploy`` of the demo model beside a plain script doing the same work.

Measured: the wall time of ``servegate deploy --json`` in a fresh process (the
CI interface, on its defaults: local ephemeral Prefect, MLflow in a SQLite
file whose tables already exist, GX validation, the bundled server as canary).

Baseline: a fresh process running :data:`PLAIN_DEPLOY` — the same work with
no orchestration and no tracking: load the Keras file and export a SavedModel,
compute the golden predictions, copy it into a staging dir, start the bundled
server on it, wait until AVAILABLE, send every reference row over REST,
compare with the golden predictions, rename the version into production.

Both run on the same machine in the same run, alternately (plain, servegate,
plain, servegate, ...), and medians are compared. Goal: <= 1.5x. The figure's
detail says where servegate's time goes (its own per-step timings from the
outcome, and what is left: process start, imports, Prefect, MLflow).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure

REPO_ROOT = Path(__file__).resolve().parents[1]

PLAIN_DEPLOY = r'''
import os, shutil, subprocess, sys, time
from pathlib import Path
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, pandas as pd, requests, keras
model_path, reference, work = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
export_dir = work / "export"
keras.saving.load_model(model_path, compile=False).export(str(export_dir), format="tf_saved_model", verbose=False)
import tensorflow as tf
fn = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
frame = pd.read_parquet(reference)
x = np.stack(frame["features"].to_numpy()).astype("float32")
golden = list(fn(features=tf.constant(x)).values())[0].numpy()
staging = work / "staging" / "plain" / "1"
shutil.copytree(export_dir, staging)
s = __import__("socket").socket(); s.bind(("127.0.0.1", 0)); rest = s.getsockname()[1]
g = __import__("socket").socket(); g.bind(("127.0.0.1", 0)); grpc = g.getsockname()[1]; s.close(); g.close()
server = subprocess.Popen([sys.executable, "-m", "servegate.serving", f"--port={grpc}", f"--rest_api_port={rest}",
                           "--model_name=plain", f"--model_base_path={staging.parent}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
try:
    url = f"http://127.0.0.1:{rest}/v1/models/plain"
    deadline = time.monotonic() + 180
    while True:
        try:
            states = requests.get(url, timeout=2).json().get("model_version_status", [])
            if any(s["state"] == "AVAILABLE" for s in states):
                break
        except (requests.RequestException, ValueError):
            pass
        assert time.monotonic() < deadline, "plain: server not AVAILABLE"
        time.sleep(0.05)
    answers = []
    for start in range(0, len(x), 256):
        reply = requests.post(url + ":predict", json={"inputs": {"features": x[start:start + 256].tolist()}}, timeout=30)
        answers.append(np.asarray(reply.json()["outputs"], dtype="float32"))
    served = np.concatenate(answers).reshape(golden.shape)
    assert np.allclose(served, golden, rtol=1e-4, atol=1e-5), "plain: parity failed"
finally:
    server.terminate(); server.wait(timeout=30)
production = work / "production" / "plain"
production.mkdir(parents=True)
os.rename(staging, production / "1")
'''


def _env(home: Path) -> dict:
    return dict(os.environ, SERVEGATE_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2", PREFECT_SERVER_ANALYTICS_ENABLED="false",
                MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")


def _plain_s(files, work: Path) -> float:
    work.mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", PLAIN_DEPLOY, str(files.model_path), str(files.reference_path), str(work)],
                   check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def _servegate_s(files, home: Path, store: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "servegate", "deploy", "--model", str(files.model_path), "--name", "bench",
         "--reference", str(files.reference_path), "--store", str(store), "--json"],
        cwd=REPO_ROOT, env=_env(home), capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"servegate deploy exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def run(quick: bool = False) -> list[Figure]:
    from servegate.demo.model import write_variant
    from servegate.tracking import Tracker

    rounds = 1 if quick else 3
    root = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    try:
        files = write_variant("baseline", root / "models")
        home = root / "home"
        Tracker(_env(home)["MLFLOW_TRACKING_URI"])  # create MLflow's tables before timing (a CI store has them)
        plain, ours, outcomes = [], [], []
        for i in range(rounds):
            plain.append(_plain_s(files, root / f"plain-{i}"))
            seconds, outcome = _servegate_s(files, home, root / f"store-{i}")
            ours.append(seconds)
            outcomes.append(outcome)
        ratio = statistics.median(ours) / statistics.median(plain)
        steps = outcomes[-1]["timings"]
        accounted = sum(steps.values())
        detail = {
            "servegate_deploy_s": [round(s, 2) for s in ours],
            "plain_script_s": [round(s, 2) for s in plain],
            "servegate_steps_s": steps,
            "servegate_rest_s (process start, imports, Prefect, MLflow, artifacts)": round(ours[-1] - accounted, 2),
        }
        print(f"# deploy: servegate {detail['servegate_deploy_s']} s, plain {detail['plain_script_s']} s; "
              f"steps {steps}; rest {detail['servegate_rest_s (process start, imports, Prefect, MLflow, artifacts)']} s",
              flush=True)
        return [Figure("servegate deploy vs plain script (demo model)", ratio, 1.5, detail=detail)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
