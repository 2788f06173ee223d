"""Recording traffic: what the request log and ``servegate tap`` cost, measured side by side in one run.

The request log: one bundled server serves a small SavedModel, and its
``logging_config`` is switched (the config file re-read while serving, as
users change it) between off, sampling rate 1.0 and 0.1, the order rotating
from round to round. In each state it gets one slice of the same load
(one-row ``:predict`` requests over REST from a few client threads). One
process for all states: separate servers, each without logging, differ from
each other by several percent (memory layout, hash seeds, scheduling), as
much as what is measured. Each round gives a ratio of logging on against the
same round's slice with logging off, and the figure is the median of the
rounds' ratios (all in the detail), so one slice disturbed by another
process on a shared machine moves one ratio, not the verdict.

Figures: throughput with logging on against off (goal 0.95x: the issue's
goal; the p50/p99 added is in the detail, from every slice's latencies); the
same as the throughput a CPU-bound server would reach, from the server
process's own CPU time per request (``/proc/<pid>/stat``, per slice): on a
shared machine the throughput ratio moves with the other processes' load,
and the CPU a request costs the server moves less. Once logging was first on,
the server keeps its (idle) writer thread in the rounds with logging off.

The tap: ``servegate tap`` in front of a second bundled server without
logging, against calling that server directly (REST and gRPC), in short
slices taking turns, each target's median slice; p50/p99 added latency in
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
from dataclasses import dataclass, field
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


def _write_config(config: Path, base: Path, prefix: Path, rate: float | None) -> None:
    """The model config, with ``logging_config`` at ``rate`` (None: none), replaced whole (never read half)."""
    logging = ""
    if rate is not None:
        logging = (f' logging_config {{ log_collector_config {{ type: "tfrecord" filename_prefix: '
                   f'"{prefix}" }} sampling_config {{ sampling_rate: {rate} }} }}')
    partial = config.with_suffix(".partial")
    partial.write_text(f'model_config_list {{ config {{ name: "bench" base_path: "{base}"{logging} }} }}\n')
    os.replace(partial, config)


def _server(base: Path, tmp: Path, label: str, poll_s: float = 0.0) -> tuple[subprocess.Popen, str, str]:
    """A bundled server without logging; with ``poll_s``, it re-reads its config file (``tmp/label.config``)."""
    rest, grpc_port = pick_free_ports(2)
    config = tmp / f"{label}.config"
    _write_config(config, base, tmp / label / "bench", None)
    proc = _start([sys.executable, "-m", "servegate.serving", f"--port={grpc_port}", f"--rest_api_port={rest}",
                   f"--model_config_file={config}", f"--model_config_file_poll_wait_seconds={poll_s}"],
                  tmp / f"{label}.log")
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
    """CPU time of a process's threads, in nanoseconds' resolution (Linux's schedstat).

    ``/proc/<pid>/stat`` counts in clock ticks (10 ms), 5% of a slice's CPU: too coarse for one slice.
    A thread that ends between two readings takes its time with it; the server's threads live as long
    as it does (its worker pool, the request log's writer, the config poll).
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def _rounds(targets: dict[str, tuple], n: int, slices: int) -> dict[str, tuple[float, np.ndarray]]:
    """Short slices of load, the targets taking turns, ``slices`` times: the median slice's throughput and
    every latency. Turns this short spread a shared machine's noise over all targets alike."""
    rates: dict[str, list[float]] = {name: [] for name in targets}
    latencies: dict[str, list[np.ndarray]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(slices):
        # the order rotates, so no target always follows the heaviest one (the tap leaves the CPU busy)
        for name in names[i % len(names):] + names[:i % len(names)]:
            load, address = targets[name]
            rps, lat = load(address, n)
            rates[name].append(rps)
            latencies[name].append(lat)
    return {name: (float(np.median(rates[name])), np.concatenate(latencies[name])) for name in targets}


_LOGGING_LINE = b"Request logging for model bench:"  # the server's line for each logging_config it applies
_STATES: tuple[float | None, ...] = (None, 1.0, 0.1)  # logging off, at 1.0, at 0.1


def _apply_logging(server: tuple, base: Path, tmp: Path, rate: float | None) -> None:
    """Rewrite the toggled server's config and wait until it logs the change as applied."""
    proc, log = server[0], tmp / "toggled.log"
    applied = log.read_bytes().count(_LOGGING_LINE)
    _write_config(tmp / "toggled.config", base, tmp / "toggled" / "bench", rate)
    deadline = time.monotonic() + 60
    while log.read_bytes().count(_LOGGING_LINE) == applied:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not apply logging at {rate}; see {log}")
        time.sleep(0.05)


@dataclass
class _Slices:
    """One logging state's slices: throughput, server CPU seconds per request, latencies."""

    rps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)


def _logging_rounds(server: tuple, base: Path, tmp: Path, n: int, rounds: int) -> dict[float | None, _Slices]:
    """One server, its logging switched off, to 1.0 and to 0.1 in turn (the order rotating), one slice
    of REST load in each state, ``rounds`` times. One process for all three states: separate servers
    differ from each other by several percent with logging off (memory layout, hash seeds, scheduling),
    as much as what is measured here."""
    proc, url = server[0], server[1]
    _load_rest(url, n)  # warm-up, not counted
    slices = {state: _Slices() for state in _STATES}
    current: object = None  # the server starts with logging off
    for i in range(rounds):
        for state in _STATES[i % 3:] + _STATES[:i % 3]:
            if state != current:
                _apply_logging(server, base, tmp, state)
                current = state
            before = _cpu_seconds(proc.pid)
            rps, lat = _load_rest(url, n)
            slices[state].cpu.append((_cpu_seconds(proc.pid) - before) / len(lat))
            slices[state].rps.append(rps)
            slices[state].latencies.append(lat)
    return slices


def _logging_figures(slices: dict[float | None, _Slices], records: int) -> list[Figure]:
    """Per round, logging on against the same round's slice with logging off; the figure is the median
    of those ratios, so one slice disturbed by another process moves one ratio, not the verdict."""
    off = slices[None]
    out = []
    for rate, name in ((1.0, "1.0"), (0.1, "0.1")):
        on = slices[rate]
        rps_ratios = [a / b for a, b in zip(on.rps, off.rps)]
        cpu_ratios = [b / a for a, b in zip(on.cpu, off.cpu)]
        detail = _detail((float(np.median(off.rps)), np.concatenate(off.latencies)),
                         (float(np.median(on.rps)), np.concatenate(on.latencies)))
        detail["rounds"] = [round(r, 3) for r in rps_ratios]
        if rate == 1.0:
            detail["records_written"] = records
        out.append(Figure(f"request log at {name}, REST throughput vs off", float(np.median(rps_ratios)),
                          0.95, True, detail))
        out.append(Figure(f"request log at {name}, CPU-bound throughput vs off", float(np.median(cpu_ratios)),
                          0.95, True, {"server_cpu_us_per_request": round(float(np.median(on.cpu)) * 1e6, 1),
                                       "baseline_server_cpu_us_per_request":
                                           round(float(np.median(off.cpu)) * 1e6, 1),
                                       "rounds": [round(r, 3) for r in cpu_ratios]}))
    return out


def _records(prefix: Path) -> int:
    from servegate.traffic.reader import LogReader

    reader = LogReader()
    return sum(1 for path in sorted(prefix.parent.glob(prefix.name + "-*.tfrecord")) for _ in reader.records(path))


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
    n, repeats, logging_rounds = (200, 3, 3) if quick else (500, 9, 15)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-traffic-") as temp:
        tmp = Path(temp)
        try:
            base = _model(tmp)
            off = _server(base, tmp, "off")
            toggled = _server(base, tmp, "toggled", poll_s=0.2)
            procs += [off[0], toggled[0]]
            tap = _tap(off[1], off[2], tmp)
            procs.append(tap[0])
            for proc, url, _ in (off, toggled, tap):
                _wait(url, proc)
            slices = _logging_rounds(toggled, base, tmp, n, logging_rounds)
            rest = _rounds({"off": (_load_rest, off[1]), "tap": (_load_rest, tap[1])}, n, repeats)
            grpc = _rounds({"off": (_load_grpc, off[2]), "tap": (_load_grpc, tap[2])}, n, repeats)
            replayed = _replay_figure(base, tmp, off[1], off[2], 300 if quick else 1500)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        records = _records(tmp / "toggled" / "bench")  # after the server's exit: its last records are flushed
    return [
        *_logging_figures(slices, records),
        Figure("servegate tap, REST throughput vs direct", rest["tap"][0] / rest["off"][0], 0.3, True,
               _detail(rest["off"], rest["tap"])),
        Figure("servegate tap, gRPC throughput vs direct", grpc["tap"][0] / grpc["off"][0], 0.3, True,
               _detail(grpc["off"], grpc["tap"])),
        replayed,
    ]
