"""The same work as ``servegate deploy``, written by hand: the baseline of ``bench_deploy``.

    python benchmarks/same_work.py MODEL.keras REFERENCE.parquet STAGING_ROOT PRODUCTION_ROOT NAME

What a user would write instead of a deploy, doing its work and nothing more:
export the ``.keras`` file as a SavedModel, stage it as the next numbered
version directory, boot the bundled server (``python -m servegate.serving``,
as a canary) on the staged version, predict every reference row over REST,
compare with the in-process predictions of the model already in memory, and
rename the version into the production base path. No orchestration, no
tracking, no report, no checks beyond the comparison; an fsync of the export's
files and of both parent directories, as any crash-safe hand-written stage and
rename needs. Prints one JSON line (version, rows, max abs difference, seconds
per phase); exits 1 when the served answers differ from the in-process ones.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TOLERANCE = 1e-4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _next_version(*bases: Path) -> int:
    numbers = [int(p.name) for base in bases if base.is_dir() for p in base.iterdir() if p.name.isdigit()]
    return max(numbers, default=0) + 1


def _rest(url: str, body: dict | None = None, timeout: float = 30) -> dict:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as reply:
        return json.loads(reply.read())


def _wait_available(url: str, server: subprocess.Popen, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited {server.returncode}")
        try:
            states = [v["state"] for v in _rest(url, timeout=2).get("model_version_status", [])]
            if "AVAILABLE" in states:
                return
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url}: not AVAILABLE in {deadline_s} s")


def main(model_path: str, reference: str, staging_root: str, production_root: str, name: str) -> int:
    phases, started = {}, time.perf_counter()
    import keras
    import numpy as np
    import pandas as pd

    model = keras.saving.load_model(model_path, compile=False)
    staging, production = Path(staging_root) / name, Path(production_root) / name
    staging.mkdir(parents=True, exist_ok=True)
    production.mkdir(parents=True, exist_ok=True)
    version = _next_version(staging, production)
    staged = staging / str(version)
    model.export(str(staged), format="tf_saved_model", verbose=False)
    _fsync_tree(staged)
    phases["export_and_stage_s"] = time.perf_counter() - started

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "servegate.serving", "--port=0", f"--rest_api_port={port}",
                               f"--model_name={name}", f"--model_base_path={staging}"])
    try:
        url = f"http://127.0.0.1:{port}/v1/models/{name}"
        frame = pd.read_parquet(reference)
        input_name = model.inputs[0].name
        rows = np.stack(frame[input_name].to_numpy()).astype("float32").reshape((-1, *model.inputs[0].shape[1:]))
        expected = np.asarray(model(rows, training=False)).reshape(len(rows), -1)
        _wait_available(url, server)
        phases["canary_ready_s"] = time.perf_counter() - started
        served = np.asarray(_rest(f"{url}/versions/{version}:predict", {"instances": rows.tolist()})["predictions"],
                            dtype="float32").reshape(len(rows), -1)
    finally:
        server.terminate()
        server.wait(30)
    difference = float(np.max(np.abs(served - expected)))
    phases["predict_and_compare_s"] = time.perf_counter() - started
    if difference > TOLERANCE:
        print(json.dumps({"version": version, "rows": len(rows), "max_abs_diff": difference}))
        return 1
    os.rename(staged, production / str(version))
    for parent in (staging, production):
        fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    phases["promote_s"] = time.perf_counter() - started
    print(json.dumps({"version": version, "rows": len(rows), "max_abs_diff": difference,
                      "phases": {k: round(v, 3) for k, v in phases.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
