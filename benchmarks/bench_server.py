"""Bundled server throughput: gRPC Predict of 100k rows x 64 float features vs in-process ``serving_default``.

Bulk validation pushes its reference rows through the canary's gRPC Predict;
the goal is at least half the throughput of calling the same SavedModel's
``serving_default`` in the benchmark's own process on the same batches.
Both run in the same run on the same machine, each timed best of three; the
server is a real ``python -m servegate.serving`` subprocess on a loopback
port, and the client sends 10k-row batches from 4 threads (as a validation
client would), with tensors as ``tensor_content`` bytes.

Two models: a typical tabular MLP (goal 0.5, the brief's), and an MLP that does
almost no arithmetic, which measures the transport alone (see ``MODELS``).
Also reported: REST row-form throughput for the first model (JSON is not the
bulk path; a low bar that still catches a regression), and the latency of a
one-row request over REST against gRPC.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.harness import Figure
from servegate.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 64


def _wait(rest_url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bundled server exited with {proc.returncode}")
        try:
            if requests.get(f"{rest_url}/v1/models/bench", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError("bundled server did not become available")


REPEATS = 3  # each side is timed this many times and its best time kept: less noise on a shared machine


def _best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def _mlp(hidden: tuple[int, ...]):
    """A dense regressor ``features`` (float32 [-1, 64]) -> ``output_0`` ([-1, 1])."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(N_FEATURES,), name="features", dtype="float32")
    x = inputs
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"hidden_{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="prediction")(x))


# (label, hidden layers, goal). The first is a typical tabular MLP; the second does almost no
# arithmetic, so it measures the transport alone (25 MB through loopback gRPC against a memcpy
# in-process): its goal is lower, and it is there to show the floor, not to pass the 0.5 bar.
MODELS = [
    ("tabular MLP 64-256-256-1", (256, 256), 0.5),
    ("transport-bound MLP 64-8-1", (8,), 0.1),
]


def run(quick: bool = False) -> list[Figure]:
    figures: list[Figure] = []
    for label, hidden, goal in MODELS:
        figures += _run_model(label, hidden, goal, quick, with_rest=(hidden == MODELS[0][1]))
    return figures


def _run_model(label: str, hidden: tuple[int, ...], goal: float, quick: bool, with_rest: bool) -> list[Figure]:
    import grpc
    import orjson
    import requests
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from servegate.serving.server.tensor_codec import ndarray_to_tensor_proto, tensor_proto_to_ndarray
    from tests import modelzoo

    rows = 20_000 if quick else 100_000
    batch = 10_000
    workdir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    proc = None
    try:
        modelzoo.export(_mlp(hidden), workdir / "base" / "1")
        x = np.random.default_rng(0).normal(size=(rows, N_FEATURES)).astype(np.float32)
        batches = [x[i:i + batch] for i in range(0, rows, batch)]

        signature = tf.saved_model.load(str(workdir / "base" / "1")).signatures["serving_default"]
        signature(features=tf.constant(batches[0]))  # warm-up (tracing)
        in_process_s, expected = _best_of(
            REPEATS, lambda: np.concatenate([signature(features=tf.constant(b))["output_0"].numpy() for b in batches])
        )

        rest_port, grpc_port = free_port(), free_port()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "servegate.serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             "--model_name=bench", f"--model_base_path={workdir / 'base'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT, env=env,
        )
        rest_url = f"http://127.0.0.1:{rest_port}"
        _wait(rest_url, proc)

        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[
            ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
            # Larger HTTP/2 flow-control windows, as the server sets: multi-MB messages otherwise stall.
            ("grpc.http2.lookahead_bytes", 16 << 20)])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def grpc_predict(b: np.ndarray) -> np.ndarray:
            request = predict_pb2.PredictRequest(inputs={"features": ndarray_to_tensor_proto(b)})
            request.model_spec.name = "bench"
            return tensor_proto_to_ndarray(stub.Predict(request, timeout=120).outputs["output_0"])

        grpc_predict(batches[0])  # warm-up (callable creation, connection)
        with ThreadPoolExecutor(4) as pool:
            grpc_s, served = _best_of(REPEATS, lambda: np.concatenate(list(pool.map(grpc_predict, batches))))
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)

        rest_rows = batches[: max(1, len(batches) // 5)] if with_rest else []  # JSON is slow: a fifth of the data is enough
        session = requests.Session()

        def rest_predict(b: np.ndarray) -> list:
            body = orjson.dumps({"instances": b}, option=orjson.OPT_SERIALIZE_NUMPY)
            response = session.post(f"{rest_url}/v1/models/bench:predict", data=body,
                                    headers={"Content-Type": "application/json"}, timeout=120)
            response.raise_for_status()
            return orjson.loads(response.content)["predictions"]

        rest_s, _ = _best_of(REPEATS, lambda: [rest_predict(b) for b in rest_rows])

        # Small-request latency: one row, sequential, REST vs gRPC (catches per-request stalls
        # such as Nagle's 40 ms delayed-ACK wait, which once made REST 15x slower).
        one_row = x[:1]
        latency_n = 100 if with_rest else 0
        rest_small_s, _ = _best_of(REPEATS, lambda: [rest_predict(one_row) for _ in range(latency_n)])
        grpc_small_s, _ = _best_of(REPEATS, lambda: [grpc_predict(one_row) for _ in range(latency_n)])
        rest_rows_n = sum(len(b) for b in rest_rows)
        channel.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    in_process_rps = rows / in_process_s
    grpc_rps = rows / grpc_s
    detail = {"model": label, "rows": rows, "batch": batch, "features": N_FEATURES,
              "in_process_rows_per_s": round(in_process_rps), "grpc_rows_per_s": round(grpc_rps)}
    figures = [Figure(f"server gRPC Predict {rows}x{N_FEATURES}, {label}", grpc_rps / in_process_rps, goal,
                      higher_is_better=True, detail=detail)]
    if with_rest:
        rest_rps = rest_rows_n / rest_s
        # REST is not the bulk path (JSON text is ~4x the bytes and parsed in Python): reported
        # with a low bar so that a regression (e.g. per-element conversions) still shows.
        figures.append(Figure(f"server REST :predict rows, {label}", rest_rps / in_process_rps, 0.02,
                              higher_is_better=True, detail={**detail, "rest_rows_per_s": round(rest_rps)}))
        figures.append(Figure("server 1-row predict latency, REST vs gRPC", rest_small_s / grpc_small_s, 5.0,
                              detail={"rest_ms": round(rest_small_s / latency_n * 1000, 3),
                                      "grpc_ms": round(grpc_small_s / latency_n * 1000, 3)}))
    return figures
