"""A steady probe of reference rows: where production exposes no metrics, it stands in for them.

A thread sends one reference row per request to production's REST API at
``rate`` requests per second (rows in turn) and counts outcomes and latencies
into the same cumulative form as the metrics page (:class:`Snapshot`, with TF
Serving's latency buckets), so the bake judges a probe exactly as it judges
production's own counts. It sees only its own requests: real traffic's errors
are invisible to it, which is why metrics come first.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from typing import Mapping

import numpy as np

from servegate.bake.metrics import Snapshot

_HTTP = re.compile(r"HTTP (\d{3})")


def latency_bounds_us() -> list[float]:
    from servegate.serving.server.metrics import LATENCY_BUCKETS_US

    return [b for b in LATENCY_BUCKETS_US if b != float("inf")]


class Probe:
    """Reference rows sent to ``url`` at a steady pace until stopped; :meth:`snapshot` reads its counts."""

    def __init__(self, url: str, model_name: str, rows: list[Mapping[str, np.ndarray]], rate: float,
                 timeout_s: float = 5.0) -> None:
        if not rows:
            raise ValueError("a probe needs at least one reference row")
        self.url, self.model_name, self.rows = url.rstrip("/"), model_name, rows
        self.interval_s, self.timeout_s = 1.0 / rate, timeout_s
        self._bounds = latency_bounds_us()
        self._buckets = [0.0] * len(self._bounds)
        self._observed = 0.0
        self._requests: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="servegate-bake-probe", daemon=True)

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout_s + 5)

    def snapshot(self) -> Snapshot:
        with self._lock:
            cumulative, total = [], 0.0
            for count in self._buckets:
                total += count
                cumulative.append(total)
            return Snapshot(at=time.time(), requests=dict(self._requests), bounds_us=list(self._bounds),
                            cumulative=cumulative, observed=self._observed)

    def _record(self, status: str, seconds: float | None) -> None:
        with self._lock:
            self._requests[status] = self._requests.get(status, 0.0) + 1
            if seconds is not None:
                self._observed += 1
                index = bisect.bisect_left(self._bounds, seconds * 1e6)
                if index < len(self._buckets):  # beyond the last bound: only the +Inf bucket (observed)
                    self._buckets[index] += 1

    def _run(self) -> None:
        from servegate.serving.client import ServingClient

        next_at = time.monotonic()
        with ServingClient(self.model_name, rest_url=self.url, transport="rest", timeout_s=self.timeout_s) as client:
            i = 0
            while not self._stop.is_set():
                row = self.rows[i % len(self.rows)]
                i += 1
                started = time.perf_counter()
                try:
                    client.predict(row)
                    self._record("OK", time.perf_counter() - started)
                except Exception as exc:  # every failure is a figure here, never a crash of the deploy
                    code = _HTTP.search(str(exc))
                    self._record(f"HTTP {code.group(1)}" if code else type(exc).__name__, None)
                next_at += self.interval_s
                self._stop.wait(max(0.0, next_at - time.monotonic()))
