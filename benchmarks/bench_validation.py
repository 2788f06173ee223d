"""Validation through the canary: throughput against in-process inference, and memory on a big reference.

1. **throughput** — the same rows of a 64-feature MLP (two dense layers of
   256) go through (a) the SavedModel's ``serving_default`` loaded in this
   process, and (b) ``validate()`` against a canary (bundled server, process
   runner), which sends them over gRPC with ``tensor_content`` bytes and the
   default concurrency. Ratio = canary rows/s (the send phase of validate) /
   in-process rows/s, both measured in this run with the same batch size,
   side by side in each of 3 rounds (1 with ``--quick``); the figure is the
   median of the rounds' ratios. Goal >= 0.8. The whole validate() time (GX,
   plots included) is in the detail.
2. **memory** — a 1M-row, 64-column Parquet reference validates in batches in
   a child process (the validating process alone, not the server); its peak
   RSS from ``resource.getrusage`` against 2 GB. Goal <= 1.

``--quick`` scales both down (20k rows; 200k rows).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Figure

N_FEATURES = 64
BATCH = 4096
GB2 = 2 * 1024 ** 3
REPO = Path(__file__).resolve().parents[1]


def _mlp(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(N_FEATURES,), name="features", dtype="float32")
    x = keras.layers.Dense(256, activation="relu")(inputs)
    x = keras.layers.Dense(256, activation="relu")(x)
    out = keras.layers.Dense(1, name="prediction")(x)
    keras.Model(inputs, out).export(str(path), format="tf_saved_model", verbose=False)
    return path


def _in_process_rows_per_s(model_dir: Path, x: np.ndarray) -> tuple[float, np.ndarray]:
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    name = next(iter(fn.structured_outputs))
    fn(features=tf.constant(x[:BATCH]))  # warm-up: tracing and first-call allocation out of the timing
    began = time.perf_counter()
    parts = [fn(features=tf.constant(x[i:i + BATCH]))[name].numpy() for i in range(0, len(x), BATCH)]
    return len(x) / (time.perf_counter() - began), np.concatenate(parts)


def _write_reference(path: Path, n_rows: int, golden_fn=None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    schema = pa.schema([(f"features_{i}", pa.float32()) for i in range(N_FEATURES)] + [("label", pa.float32())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_rows, 100_000):
            x = rng.normal(size=(min(100_000, n_rows - start), N_FEATURES)).astype("float32")
            cols = {f"features_{i}": x[:, i] for i in range(N_FEATURES)}
            cols["label"] = x[:, 0]
            writer.write_table(pa.table(cols, schema=schema))
    return path


_CHILD = r"""
import json, resource, sys, time
from servegate.validation import load_config, load_reference, validate
from servegate.serving.client import ServingClient
ref_path, grpc_target, out_dir, signature = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
config = load_config({"batch_size": 4096, "concurrency": 4,
                      "service_level": {"max_p95_ms": None}})
began = time.perf_counter()
reference = load_reference(ref_path, signature, config)
client = ServingClient("mlp", grpc_target=grpc_target)
report = validate(client, reference, config, candidate=1, out_dir=out_dir)
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "rows": report.rows, "verdict": report.verdict, "timings": report.timings,
                  "seconds": time.perf_counter() - began}))
"""

SIGNATURE = {"inputs": {"features": {"dtype": "float32", "shape": [None, N_FEATURES]}},
             "outputs": {"prediction": {"dtype": "float32", "shape": [None, 1]}}}


def run(quick: bool = False) -> list[Figure]:
    from servegate.serving.runners import CanarySpec, make_runner
    from servegate.validation import load_config, load_reference, validate

    n_throughput = 20_000 if quick else 100_000
    n_memory = 200_000 if quick else 1_000_000
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench_validation_") as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("SERVEGATE_HOME", str(tmp_path / "home"))
        model_dir = _mlp(tmp_path / "mlp")
        ref_small = _write_reference(tmp_path / "small.parquet", n_throughput)
        config = load_config({"batch_size": BATCH,
                              "service_level": {"max_p95_ms": None}})
        reference = load_reference(ref_small, SIGNATURE, config)
        x = np.concatenate([b["features"] for b in reference.batches(BATCH)])

        with make_runner("process", CanarySpec("mlp", {1: model_dir})) as runner:
            runner.wait_until_available(180.0)
            rounds = []
            for i in range(1 if quick else 3):
                inproc_rps, _ = _in_process_rows_per_s(model_dir, x)
                report = validate(runner, reference, config, candidate=1, out_dir=tmp_path / f"report_small_{i}")
                canary_rps = report.rows / report.timings["send_candidate_s"]
                rounds.append({"ratio": round(canary_rps / inproc_rps, 3), "canary_rows_per_s": round(canary_rps),
                               "in_process_rows_per_s": round(inproc_rps),
                               "validate_total_s": round(report.timings["total_s"], 2), "verdict": report.verdict})
            figures.append(Figure(
                f"validation throughput: canary gRPC vs in-process ({n_throughput // 1000}k rows)",
                statistics.median(r["ratio"] for r in rounds), 0.8, higher_is_better=True,
                detail={"rounds": rounds, "batch_size": BATCH, "concurrency": config.concurrency,
                        "load_average": os.getloadavg()}))

            ref_big = _write_reference(tmp_path / "big.parquet", n_memory)
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, str(ref_big), runner.grpc_target, str(tmp_path / "report_big"),
                 json.dumps(SIGNATURE)],
                capture_output=True, text=True, cwd=REPO, timeout=1800,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if child.returncode != 0:
            raise RuntimeError(f"memory benchmark child failed ({child.returncode}): {child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        figures.append(Figure(
            f"validation peak RSS, {n_memory // 1000}k x {N_FEATURES} Parquet vs 2 GB",
            result["peak_rss_bytes"] / GB2, 1.0, higher_is_better=False,
            detail={"peak_rss_mb": result["peak_rss_bytes"] / 2 ** 20, "rows": result["rows"],
                    "validate_s": result["seconds"], "timings": result["timings"]}))
    return figures
