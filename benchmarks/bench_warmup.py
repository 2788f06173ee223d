"""First requests after a swap, with and without warm-up, against steady state.

Setup: a small Keras MLP exported as a SavedModel; every version directory
gets a warm-up file from :func:`servegate.serving.warmup.write_warmup_requests`
(reference rows, as at stage time). Two bundled servers run side by side in
the same run on the same files: one with TensorFlow Serving's default
``--enable_model_warmup=true``, one with ``--enable_model_warmup=false``;
that flag is the only difference.

For each swap, a new version is renamed into both base paths (as a promotion
does); once a server reports it AVAILABLE, the benchmark sends the first
:data:`FIRST` one-row REST predicts pinned to that version, then
:data:`STEADY` more. A figure compares the median (over swaps) latency of the
first request with the median steady-state latency. Servers are measured one
after the other, never both at once, on this 2-core machine.

Figures: first request / steady with warm-up (goal <= 3: warm-up should make
the first request after a swap about as fast as the rest), and the first
request's latency without warm-up over with warm-up (goal >= 2: the cost
warm-up removes).
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

import numpy as np

from benchmarks.harness import Figure
from servegate.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "warm"
N_FEATURES = 16
FIRST = 3      # requests timed as "first after the swap"
STEADY = 60    # requests timed as steady state, right after


def _make_savedmodel(path: Path, seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(N_FEATURES,), name="features", dtype="float32")
    x = inputs
    for width in (128, 128, 64):
        x = keras.layers.Dense(width, activation="relu")(x)
    out = keras.layers.Dense(1, name="prediction")(x)
    keras.Model(inputs, out).export(str(path), format="tf_saved_model", verbose=False)


class _Server:
    def __init__(self, base: Path, log: Path, warmup: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/models/{NAME}"
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servegate.serving", "--port=0", f"--rest_api_port={self.port}",
             f"--model_name={NAME}", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.1",
             f"--enable_model_warmup={str(warmup).lower()}"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    def wait_available(self, version: int, timeout: float = 120.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bundled server exited with {self.proc.returncode}")
            try:
                reply = requests.get(f"{self.url}/versions/{version}", timeout=2)
                if reply.ok and reply.json()["model_version_status"][0]["state"] == "AVAILABLE":
                    return
            except (requests.RequestException, KeyError, ValueError):
                pass
            time.sleep(0.005)
        raise RuntimeError(f"version {version} did not become AVAILABLE within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def _stage(source: Path, base: Path, version: int) -> None:
    temp = base / f".tmp-{version}"
    shutil.copytree(source, temp)
    temp.rename(base / str(version))


def _latencies(session, url: str, rows: np.ndarray, n: int, offset: int) -> list[float]:
    times = []
    for i in range(n):
        body = json.dumps({"instances": [rows[(offset + i) % len(rows)].tolist()]})
        started = time.perf_counter()
        reply = session.post(url, data=body, timeout=30)
        times.append(time.perf_counter() - started)
        if reply.status_code != 200:
            raise RuntimeError(f"predict failed: {reply.status_code} {reply.text[:200]}")
    return times


def _measure(server: _Server, source: Path, base: Path, version: int, rows: np.ndarray) -> tuple[float, float]:
    """(first request, median steady) seconds for ``version`` swapped in."""
    import requests

    _stage(source, base, version)
    server.wait_available(version)
    url = f"{server.url}/versions/{version}:predict"
    with requests.Session() as session:
        session.get(f"{server.url}", timeout=5)  # the connection is open before the timed requests
        first = _latencies(session, url, rows, FIRST, 0)
        steady = _latencies(session, url, rows, STEADY, FIRST)
    return first[0], statistics.median(steady)


def run(quick: bool = False) -> list[Figure]:
    from servegate.serving.warmup import write_warmup_requests

    swaps = 3 if quick else 6
    rows = np.random.default_rng(0).normal(size=(64, N_FEATURES)).astype("float32")
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as tmp:
        work = Path(tmp)
        sources = []
        for seed in range(2):
            sources.append(work / f"model-{seed}")
            _make_savedmodel(sources[-1], seed)
            write_warmup_requests(sources[-1], {"features": rows}, model_name=NAME, count=10)
        servers = {}
        try:
            for warmup in (True, False):
                base = work / f"base-{warmup}"
                base.mkdir()
                _stage(sources[0], base, 1)
                servers[warmup] = _Server(base, work / f"server-{warmup}.log", warmup)
            for warmup in (True, False):
                servers[warmup].wait_available(1)
            for version in range(2, swaps + 2):
                for warmup in (True, False):
                    source = sources[version % 2]
                    results[warmup].append(_measure(servers[warmup], source, work / f"base-{warmup}", version, rows))
        finally:
            for server in servers.values():
                server.stop()
    first = {w: statistics.median(r[0] for r in results[w]) for w in results}
    steady = {w: statistics.median(r[1] for r in results[w]) for w in results}
    detail = {
        "swaps": swaps,
        "first_ms_with_warmup": [round(r[0] * 1e3, 2) for r in results[True]],
        "first_ms_without_warmup": [round(r[0] * 1e3, 2) for r in results[False]],
        "steady_median_ms_with_warmup": round(steady[True] * 1e3, 2),
        "steady_median_ms_without_warmup": round(steady[False] * 1e3, 2),
        "first_over_steady_without_warmup": round(first[False] / steady[False], 2),
    }
    return [
        Figure("warm-up: 1st request after swap / steady, warm-up on", first[True] / steady[True], 3.0,
               detail=detail),
        Figure("warm-up: 1st request after swap, off / on", first[False] / first[True], 2.0,
               higher_is_better=True, detail=detail),
    ]


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(figure.line())
        print("   ", json.dumps(figure.detail))
