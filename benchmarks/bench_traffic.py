"""Recording traffic: what the request log and ``servegate tap`` cost, measured side by side in one run.

Four real subprocesses serve the same small SavedModel: a bundled server
without logging (the baseline, and the tap's upstream), the same with
``logging_config`` at sampling rates 1.0 and 0.1, and ``servegate tap`` in
front of the baseline. The same load (one-row ``:predict`` requests over
REST, and one-row gRPC Predicts, from a few client threads) goes to each in
short slices, the targets taking turns; each target's median slice counts, so
that a shared machine's noise falls on all of them alike.

Figures: throughput with logging on against off (goal 0.95x: the issue's
goal; the p99 added is in the detail); the same as the throughput a
CPU-bound server would reach, from the server process's own CPU time per
request (``/proc/<pid>/stat``, summed over the slices of each target): on a
shared machine the throughput ratio moves by several percent from run to
run with the other processes' load, and the CPU a request costs the server
moves much less; and the tap's throughput against
calling the server directly (REST and gRPC), with p50/p99 added latency in
the detail. The tap is a Python hop, so its goal is a floor that catches a
regression (0.3x), not a promise. Last, the shadow check's replay (every
recorded request sent to two versions over the network, in its recorded form)
against calling the same model in-process on the same one-row requests: a
floor (0.02x) too, since one in-process call of a small model takes tens of
microseconds and one network round trip a millisecond.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.bench_server import REPO_ROOT
from servegate.ports import pick_free_ports
from benchmarks.harness import Figure

THREADS = 4


def _model(root: Path) -> Path:
    import tensorflow as tf

    class Small(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.reduce_sum(x * 0.5, axis=1, keepdims=True) + 2.0}

    module = Small()
    tf.saved_model.save(module, str(root / "bench" / "1"), signatures={"serving_default": module.serve})
    return root / "bench"


def _start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(log.parent)}
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)


def _server(base: Path, tmp: Path, label: str, rate: float | None) -> tuple[subprocess.Popen, str, str]:
    rest, grpc_port = pick_free_ports(2)
    logging = ""
    if rate is not None:
        logging = (f' logging_config {{ log_collector_config {{ type: "tfrecord" filename_prefix: '
                   f'"{tmp / label / "bench"}" }} sampling_config {{ sampling_rate: {rate} }} }}')
    config = tmp / f"{label}.config"
    config.write_text(f'model_config_list {{ config {{ name: "bench" base_path: "{base}"{logging} }} }}\n')
    proc = _start([sys.executable, "-m", "servegate.serving", f"--port={grpc_port}", f"--rest_api_port={rest}",
                   f"--model_config_file={config}"], tmp / f"{label}.log")
    return proc, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"


def _tap(upstream_rest: str, upstream_grpc: str, tmp: Path) -> tuple[subprocess.Popen, str, str]:
    rest, grpc_port = pick_free_ports(2)
    proc = _start([sys.executable, "-m", "servegate", "tap", f"--log-dir={tmp / 'tap'}",
                   f"--upstream-rest={upstream_rest}", f"--upstream-grpc={upstream_grpc}",
                   f"--port={rest}", f"--grpc-port={grpc_port}"], tmp / "tap.log")
    return proc, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"


def _wait(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/v1/models/bench", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become available")


def _load_rest(url: str, n: int) -> tuple[float, np.ndarray]:
    import requests

    body = {"instances": [[0.1 * i for i in range(8)]]}

    def worker(count: int) -> list[float]:
        latencies = []
        with requests.Session() as session:
            for _ in range(count):
                started = time.perf_counter()
                session.post(f"{url}/v1/models/bench:predict", json=body, timeout=30).raise_for_status()
                latencies.append(time.perf_counter() - started)
        return latencies

    return _timed(worker, n)


def _load_grpc(target: str, n: int) -> tuple[float, np.ndarray]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "bench"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.arange(8, dtype=np.float32).reshape(1, 8)))

    def worker(count: int) -> list[float]:
        latencies = []
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(count):
                started = time.perf_counter()
                stub.Predict(request, timeout=30)
                latencies.append(time.perf_counter() - started)
        return latencies

    return _timed(worker, n)


def _timed(worker, n: int) -> tuple[float, np.ndarray]:
    per = n // THREADS
    with ThreadPoolExecutor(THREADS) as pool:
        started = time.perf_counter()
        results = list(pool.map(worker, [per] * THREADS))
        wall = time.perf_counter() - started
    latencies = np.array([x for r in results for x in r])
    return len(latencies) / wall, latencies


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rounds(targets: dict[str, tuple], n: int, slices: int,
            pids: dict[str, int] | None = None) -> tuple[dict[str, tuple[float, np.ndarray]], dict[str, float]]:
    """Short slices of load, the targets taking turns, ``slices`` times: the median slice's throughput and
    every latency. Turns this short spread a shared machine's noise over all targets alike. Second: for
    each target in ``pids``, its server's CPU seconds per request over all its slices."""
    rates: dict[str, list[float]] = {name: [] for name in targets}
    latencies: dict[str, list[np.ndarray]] = {name: [] for name in targets}
    cpu = {name: 0.0 for name in pids or {}}
    names = list(targets)
    for i in range(slices):
        # the order rotates, so no target always follows the heaviest one (the tap leaves the CPU busy)
        for name in names[i % len(names):] + names[:i % len(names)]:
            load, address = targets[name]
            before = _cpu_seconds(pids[name]) if name in cpu else 0.0
            rps, lat = load(address, n)
            if name in cpu:
                cpu[name] += _cpu_seconds(pids[name]) - before
            rates[name].append(rps)
            latencies[name].append(lat)
    out = {name: (float(np.median(rates[name])), np.concatenate(latencies[name])) for name in targets}
    return out, {name: cpu[name] / sum(len(x) for x in latencies[name]) for name in cpu}


def _replay_figure(base: Path, tmp: Path, rest_url: str, grpc_target: str, n: int) -> Figure:
    """The shadow check's replay (each recorded request sent to two versions, here the same one twice, in the
    form it arrived) against calling the model in-process on the same requests, one request at a time."""
    import tensorflow as tf

    from servegate.serving.client import ServingClient
    from servegate.traffic import prediction_log as plog
    from servegate.traffic.recorder import Recorder
    from servegate.validation.shadow_logs import load_traffic
    from servegate.validation.shadow_replay import replay

    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(1, 8)).astype("float32") for _ in range(n)]
    recorder = Recorder(queue_size=n + 1)  # every request kept: a full queue would drop some
    for i, x in enumerate(rows):
        served = plog.Served("bench", 1, "serving_default", plog.ORIGINS[i % 3], 1.0)
        recorder.submit(str(tmp / "replay" / "bench"), "bench", lambda s=served, x=x: plog.rest_predict_log(
            s, plog.Addressed(), {"x": x}, {"y": np.zeros((1, 1), "float32")}))
    recorder.close()
    traffic = load_traffic(str(tmp / "replay" / "bench-*.tfrecord"), "bench", "serving_default", n, None)
    with ServingClient("bench", rest_url=rest_url, grpc_target=grpc_target) as client:
        result = replay(client, traffic, 1, 1, ["y"], deadline_s=600, concurrency=THREADS)
    replay_rps = len(result.replayed) / result.seconds
    signature = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    started = time.perf_counter()
    for x in rows:
        signature(x=tf.constant(x))
    in_process_rps = n / (time.perf_counter() - started)
    return Figure("shadow replay (2 versions) vs in-process, requests/s", replay_rps / in_process_rps, 0.02, True,
                  {"replay_rps": round(replay_rps, 1), "in_process_rps": round(in_process_rps, 1),
                   "requests": len(result.replayed)})


def _detail(base: tuple[float, np.ndarray], other: tuple[float, np.ndarray]) -> dict:
    p = lambda lat, q: float(np.percentile(lat, q) * 1e3)  # noqa: E731
    return {"rps": round(other[0], 1), "baseline_rps": round(base[0], 1),
            "p50_added_ms": round(p(other[1], 50) - p(base[1], 50), 3),
            "p99_added_ms": round(p(other[1], 99) - p(base[1], 99), 3)}


def run(quick: bool = False) -> list[Figure]:
    n, repeats = (200, 3) if quick else (400, 9)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-traffic-") as temp:
        tmp = Path(temp)
        try:
            base = _model(tmp)
            servers = {label: _server(base, tmp, label, rate)
                       for label, rate in (("off", None), ("log1", 1.0), ("log01", 0.1))}
            procs += [s[0] for s in servers.values()]
            tap = _tap(servers["off"][1], servers["off"][2], tmp)
            procs.append(tap[0])
            for proc, url, _ in [*servers.values(), tap]:
                _wait(url, proc)
            rest, cpu = _rounds({"off": (_load_rest, servers["off"][1]), "log1": (_load_rest, servers["log1"][1]),
                                 "log01": (_load_rest, servers["log01"][1]), "tap": (_load_rest, tap[1])}, n, repeats,
                                pids={label: servers[label][0].pid for label in ("off", "log1", "log01")})
            grpc, _ = _rounds({"off": (_load_grpc, servers["off"][2]), "tap": (_load_grpc, tap[2])}, n, repeats)
            replayed = _replay_figure(base, tmp, servers["off"][1], servers["off"][2], 300 if quick else 1500)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    off = rest["off"]
    return [
        Figure("request log at 1.0, REST throughput vs off", rest["log1"][0] / off[0], 0.95, True,
               _detail(off, rest["log1"])),
        Figure("request log at 0.1, REST throughput vs off", rest["log01"][0] / off[0], 0.95, True,
               _detail(off, rest["log01"])),
        Figure("request log at 1.0, CPU-bound throughput vs off", cpu["off"] / cpu["log1"], 0.95, True,
               {"server_cpu_us_per_request": round(cpu["log1"] * 1e6, 1),
                "baseline_server_cpu_us_per_request": round(cpu["off"] * 1e6, 1)}),
        Figure("request log at 0.1, CPU-bound throughput vs off", cpu["off"] / cpu["log01"], 0.95, True,
               {"server_cpu_us_per_request": round(cpu["log01"] * 1e6, 1),
                "baseline_server_cpu_us_per_request": round(cpu["off"] * 1e6, 1)}),
        Figure("servegate tap, REST throughput vs direct", rest["tap"][0] / off[0], 0.3, True,
               _detail(off, rest["tap"])),
        Figure("servegate tap, gRPC throughput vs direct", grpc["tap"][0] / grpc["off"][0], 0.3, True,
               _detail(grpc["off"], grpc["tap"])),
        replayed,
    ]
