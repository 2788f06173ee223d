"""The demo's production clients, and the recording of what they send.

The demo's production server records its traffic the way docs/traffic.md
tells users: a model config file whose ``logging_config`` writes every
answered request (sampling 1.0) as ``PredictionLog`` TFRecord files under
``<work dir>/traffic/``. Before the broken model is deployed, a short burst
of production clients sends every row of the diabetes data (training rows
too: production sees far more than the 90 reference rows) in the three forms
real clients use, REST rows, REST columns and gRPC; the client thread of step
5 keeps sending while the last model is deployed. The last deploys are judged
on that recording by the shadow check (``--traffic``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from servegate.errors import ServingError

ROWS_PER_REQUEST = 4

#: The demo's validation config for the deploys judged on recorded traffic. The improved model
#: (40 epochs against the baseline's 10) is meant to change its answers: its median answer moves
#: about 16% from production's and the 99th percentile about 50%, so the default
#: ``max_rel_change_p99`` (0.25, for a retrain that should answer about as before) would reject
#: it. 0.75 still rejects the broken model, whose answers are all about 100% off.
SHADOW_CONFIG = """\
# servegate demo: the last deploys are judged on production's recorded traffic (the shadow check).
# The improved model is meant to change answers (10 -> 40 epochs): allow 75% at the 99th percentile.
shadow:
  max_rel_change_p99: 0.75
# The newest 500 recorded requests: the replay stays around a second, however long the client runs.
traffic:
  max_requests: 500
"""


def production_rows() -> np.ndarray:
    """Every row of the diabetes data, training and reference, in a fixed order."""
    from servegate.demo.model import load_data

    data = load_data()
    return np.concatenate([data.x_train, data.x_reference]).astype("float32")


def model_config_text(model_name: str, base_path: Path, prefix: Path) -> str:
    """The production server's model config file: serve ``base_path``, log every request under ``prefix``."""
    return (f'model_config_list {{\n  config {{\n    name: "{model_name}"\n    base_path: "{base_path}"\n'
            f'    model_platform: "tensorflow"\n    logging_config {{\n'
            f'      log_collector_config {{ type: "tfrecord" filename_prefix: "{prefix}" }}\n'
            f'      sampling_config {{ sampling_rate: 1.0 }}\n    }}\n  }}\n}}\n')


def send_production_burst(model_name: str, rest_url: str, grpc_target: str, rows: np.ndarray) -> int:
    """Send ``rows`` to production, ``ROWS_PER_REQUEST`` a request, as REST rows, REST columns and gRPC in
    turn; returns the number of requests (each one answered, else ServingError)."""
    import requests

    from servegate.serving.client import ServingClient

    url = f"{rest_url}/v1/models/{model_name}:predict"
    sent = 0
    with ServingClient(model_name, grpc_target=grpc_target, timeout_s=10) as client, requests.Session() as http:
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            batch = rows[start:start + ROWS_PER_REQUEST]
            form = sent % 3
            if form == 2:
                client.predict({"features": batch})
            else:
                body = {"instances": batch.tolist()} if form == 0 else {"inputs": {"features": batch.tolist()}}
                response = http.post(url, json=body, timeout=10)
                if response.status_code != 200:
                    raise ServingError(f"demo: production answered HTTP {response.status_code}: {response.text[:300]}")
            sent += 1
    return sent


def wait_recorded(pattern: str, count: int, deadline_s: float = 10.0) -> int:
    """Wait until the request logs matching ``pattern`` hold ``count`` whole records; returns how many."""
    import glob

    from servegate.traffic.reader import LogReader

    deadline = time.monotonic() + deadline_s
    while True:
        found = sum(1 for path in glob.glob(pattern) for _ in LogReader().records(Path(path)))
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@dataclass
class TrafficStats:
    """What the client thread saw while it queried production."""

    sent: int = 0
    failed: int = 0
    versions_seen: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class ProductionTraffic:
    """A client thread sending predictions to production until stopped (bounded in time), cycling
    through ``rows`` ``ROWS_PER_REQUEST`` at a time."""

    def __init__(self, model_name: str, grpc_target: str, rows: np.ndarray, max_seconds: float = 300.0) -> None:
        self.model_name = model_name
        self.grpc_target = grpc_target
        self.rows = rows
        self.max_seconds = max_seconds
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-production-traffic", daemon=True)

    def __enter__(self) -> "ProductionTraffic":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from servegate.serving.client import ServingClient

        deadline = time.monotonic() + self.max_seconds
        starts = range(0, len(self.rows), ROWS_PER_REQUEST)
        with ServingClient(self.model_name, grpc_target=self.grpc_target, timeout_s=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                start = starts[self.stats.sent % len(starts)]
                self.stats.sent += 1
                try:
                    result = client.predict({"features": self.rows[start:start + ROWS_PER_REQUEST]})
                    version = int(result.model_version or 0)
                    self.stats.versions_seen[version] = self.stats.versions_seen.get(version, 0) + 1
                except Exception as exc:  # every failure counts: that is the point of the thread
                    self.stats.failed += 1
                    if len(self.stats.errors) < 5:
                        self.stats.errors.append(str(exc))
                self._stop.wait(0.02)
