"""Recording traffic: what the request log and ``servegate tap`` cost, measured side by side in one run.

The request log: one bundled server serves the same small SavedModel under
four names: one without ``logging_config``, one logged at sampling rate 1.0,
one at 0.1, and a control without logging (``LOGGING_MODELS``). Each gets one slice of the same load
(one-row ``:predict`` requests over REST from a few client threads) in turn,
the order rotating from round to round, the slices back to back. One process
for all three: separate servers, each without logging, differ from each other
by several percent (memory layout, hash seeds, scheduling), as much as what
is measured. Each round gives a ratio of logging on against the same round's
slice with logging off, and the figure is the median of the rounds' ratios
(all in the detail), so one slice disturbed by another process on a shared
machine moves one ratio, not the verdict. The control against the model
without logging, measured the same way, shows how far this run's noise alone
moves a ratio (in the detail). The writer thread writes a slice's
last records (at most 50 ms of them) while the next slice runs: a fraction of
a percent of the slice that follows.

Figures: throughput with logging on against off (goal 0.95x: the issue's
goal; the p50/p99 added is in the detail, from every slice's latencies); the
same as the throughput a CPU-bound server would reach, from the server
process's own CPU time per request (``/proc/<pid>/task/*/schedstat``, per
slice): on a shared machine the throughput ratio moves with the other
processes' load, and the CPU a request costs the server moves less.

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


#: The request log's states, each a model of one server (names of one length): its name and sampling rate
#: (None: no logging_config). "control" is a second model without logging, compared with "off" as the
#: others are: how far two identical models are apart in this run (its noise).
LOGGING_MODELS: dict[str, tuple[str, float | None]] = {
    "off": ("m_off", None), "1.0": ("m_100", 1.0), "0.1": ("m_010", 0.1), "control": ("m_ctl", None)}


def _server(base: Path, tmp: Path, label: str, rates: dict[str, float | None]) -> tuple[subprocess.Popen, str, str]:
    """A bundled server of the SavedModel ``base`` under each name of ``rates``, each logged at its rate
    (None: no ``logging_config``) to ``tmp/label/<name>-*.tfrecord``."""
    rest, grpc_port = pick_free_ports(2)
    configs = []
    for name, rate in rates.items():
        logging = ""
        if rate is not None:
            logging = (f' logging_config {{ log_collector_config {{ type: "tfrecord" filename_prefix: '
                       f'"{tmp / label / name}" }} sampling_config {{ sampling_rate: {rate} }} }}')
        configs.append(f'config {{ name: "{name}" base_path: "{base}"{logging} }}')
    config = tmp / f"{label}.config"
    config.write_text(f"model_config_list {{ {' '.join(configs)} }}\n")
    proc = _start([sys.executable, "-m", "servegate.serving", f"--port={grpc_port}", f"--rest_api_port={rest}",
                   f"--model_config_file={config}"], tmp / f"{label}.log")
    return proc, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"


def _tap(upstream_rest: str, upstream_grpc: str, tmp: Path) -> tuple[subprocess.Popen, str, str]:
    rest, grpc_port = pick_free_ports(2)
    proc = _start([sys.executable, "-m", "servegate", "tap", f"--log-dir={tmp / 'tap'}",
                   f"--upstream-rest={upstream_rest}", f"--upstream-grpc={upstream_grpc}",
                   f"--port={rest}", f"--grpc-port={grpc_port}"], tmp / "tap.log")
    return proc, f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}"


def _wait(url: str, proc: subprocess.Popen, model: str = "bench", timeout: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/v1/models/{model}", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become available")


def _load_rest(url: str, n: int, model: str = "bench") -> tuple[float, np.ndarray]:
    import requests

    body = {"instances": [[0.1 * i for i in range(8)]]}

    def worker(count: int) -> list[float]:
        latencies = []
        with requests.Session() as session:
            for _ in range(count):
                started = time.perf_counter()
                session.post(f"{url}/v1/models/{model}:predict", json=body, timeout=30).raise_for_status()
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
    as it does (its worker pool, the request log's writer).
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


@dataclass
class _Slices:
    """One logging state's slices: throughput, server CPU seconds per request, latencies."""

    rps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)


def _logging_rounds(server: tuple, n: int, rounds: int) -> dict[str, _Slices]:
    """One slice of REST load on each of the server's ``LOGGING_MODELS`` in turn (the order rotating),
    ``rounds`` times. One process for all states: separate servers, each without logging, differ
    from each other by several percent (memory layout, hash seeds, scheduling), as much as what is
    measured here. The slices follow each other at once, so each round's slices meet the same machine."""
    proc, url = server[0], server[1]
    for model, _ in LOGGING_MODELS.values():
        _load_rest(url, n, model)  # warm-up, not counted
    states = list(LOGGING_MODELS)
    slices = {state: _Slices() for state in states}
    for i in range(rounds):
        at = i % len(states)
        for state in states[at:] + states[:at]:
            before = _cpu_seconds(proc.pid)
            rps, lat = _load_rest(url, n, LOGGING_MODELS[state][0])
            slices[state].cpu.append((_cpu_seconds(proc.pid) - before) / len(lat))
            slices[state].rps.append(rps)
            slices[state].latencies.append(lat)
    return slices


def _ratios(on: _Slices, off: _Slices) -> tuple[list[float], list[float]]:
    """Per round: throughput on/off, and CPU per request off/on (the throughput a CPU-bound server keeps)."""
    return [a / b for a, b in zip(on.rps, off.rps)], [b / a for a, b in zip(on.cpu, off.cpu)]


def _spread(ratios: list[float]) -> dict:
    low, median, high = np.percentile(ratios, [25, 50, 75])
    return {"rounds": [round(r, 3) for r in ratios], "median": round(float(median), 3),
            "interquartile": [round(float(low), 3), round(float(high), 3)]}


def _logging_figures(slices: dict[str, _Slices], records: int) -> list[Figure]:
    """Per round, logging on against the same round's slice with logging off; the figure is the median
    of those ratios, so one slice disturbed by another process moves one ratio, not the verdict. The
    control (off against off) says how much of a figure this run's noise can make."""
    off = slices["off"]
    control_rps, control_cpu = _ratios(slices["control"], off)
    out = []
    for state in ("1.0", "0.1"):
        on = slices[state]
        rps_ratios, cpu_ratios = _ratios(on, off)
        detail = {**_detail((float(np.median(off.rps)), np.concatenate(off.latencies)),
                            (float(np.median(on.rps)), np.concatenate(on.latencies))),
                  **_spread(rps_ratios), "control_off_vs_off": _spread(control_rps)}
        if state == "1.0":
            detail["records_written"] = records
        out.append(Figure(f"request log at {state}, REST throughput vs off", float(np.median(rps_ratios)),
                          0.95, True, detail))
        out.append(Figure(f"request log at {state}, CPU-bound throughput vs off", float(np.median(cpu_ratios)),
                          0.95, True, {"server_cpu_us_per_request": round(float(np.median(on.cpu)) * 1e6, 1),
                                       "baseline_server_cpu_us_per_request":
                                           round(float(np.median(off.cpu)) * 1e6, 1),
                                       **_spread(cpu_ratios), "control_off_vs_off": _spread(control_cpu)}))
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
            off = _server(base, tmp, "off", {"bench": None})
            logged = _server(base, tmp, "logged", dict(LOGGING_MODELS.values()))
            procs += [off[0], logged[0]]
            tap = _tap(off[1], off[2], tmp)
            procs.append(tap[0])
            for proc, url, _ in (off, tap):
                _wait(url, proc)
            for model, _ in LOGGING_MODELS.values():
                _wait(logged[1], logged[0], model)
            slices = _logging_rounds(logged, n, logging_rounds)
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
        # read after the server's exit, which writes its last records
        records = _records(tmp / "logged" / LOGGING_MODELS["1.0"][0])
    return [
        *_logging_figures(slices, records),
        Figure("servegate tap, REST throughput vs direct", rest["tap"][0] / rest["off"][0], 0.3, True,
               _detail(rest["off"], rest["tap"])),
        Figure("servegate tap, gRPC throughput vs direct", grpc["tap"][0] / grpc["off"][0], 0.3, True,
               _detail(grpc["off"], grpc["tap"])),
        replayed,
    ]
