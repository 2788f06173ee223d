"""The steady load behind the service-level check, as canary analyses do (Flagger, Iter8).

A fixed pool of reference rows (the first rows of the file, bounded) is
resampled with a fixed seed into requests of ``rows_per_request`` rows; a pool
of ``concurrency`` workers keeps that many requests in flight until
``requests`` were measured per version, or ``duration_s`` passed, or the
validation deadline; or, once ``min_requests`` answered per version, the
load's ``budget_s`` passed (a large model's 200 requests take seconds). With a baseline, candidate and baseline requests
alternate inside the same load, so both versions of the same canary meet the
same machine, the same neighbours and the same moment: their latencies
compare fairly, and the ratio of the two is the judged figure.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servegate.serving.client import PredictError, ServingClient
from servegate.validation.config_sections import ServiceLevelCheck

POOL_ROWS = 4096  # rows kept in memory to resample from


@dataclass
class Sample:
    latency_ms: float
    ok: bool
    error: str | None = None


@dataclass
class LoadResult:
    """Per version ("candidate" / "baseline"), every measured request in completion order."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    seconds: float = 0.0
    concurrency: int = 1
    rows_per_request: int = 1
    stopped_by: str = "request count"

    def latencies(self, who: str) -> np.ndarray:
        return np.array([s.latency_ms for s in self.samples.get(who, []) if s.ok], dtype="float64")

    def errors(self, who: str) -> list[str]:
        return [s.error or "" for s in self.samples.get(who, []) if not s.ok]


def _pool(reference: Any) -> dict[str, np.ndarray]:
    return next(iter(reference.batches(min(reference.n_rows, POOL_ROWS))))


def run_load(client: ServingClient, reference: Any, addresses: dict[str, dict[str, Any]],
             cfg: ServiceLevelCheck, deadline_s: float) -> LoadResult:
    """Send the steady load to every address ({"candidate": {...}, "baseline": {...}}), interleaved."""
    pool = _pool(reference)
    n_pool = len(next(iter(pool.values())))
    rng = np.random.default_rng(0)
    who_order = list(addresses)
    target = cfg.requests * len(who_order)
    limit_s = min(deadline_s, cfg.duration_s) if cfg.duration_s else deadline_s
    result = LoadResult({w: [] for w in who_order}, concurrency=cfg.concurrency,
                        rows_per_request=cfg.rows_per_request)
    counter = itertools.count()
    lock = threading.Lock()
    budget_s = cfg.load_budget_s()
    answered = dict.fromkeys(who_order, 0)
    began = time.perf_counter()

    def over_budget(elapsed_s: float) -> bool:
        if budget_s is None or elapsed_s < budget_s:
            return False
        with lock:
            if min(answered.values()) < cfg.min_requests:
                return False
            result.stopped_by = f"budget {budget_s:g} s (service_level.budget_s)"
            return True

    def worker() -> None:
        while True:
            i = next(counter)
            elapsed_s = time.perf_counter() - began
            if (cfg.duration_s is None and i >= target) or elapsed_s >= limit_s or over_budget(elapsed_s):
                return
            who = who_order[i % len(who_order)]
            with lock:  # numpy's Generator is not thread-safe
                rows = rng.integers(0, n_pool, cfg.rows_per_request)
            batch = {k: v[rows] for k, v in pool.items()}
            started = time.perf_counter()
            try:
                answer = client.predict(batch, **addresses[who])
                sample = Sample(answer.latency_s * 1000.0, True)
            except PredictError as exc:
                sample = Sample((time.perf_counter() - started) * 1000.0, False, str(exc))
            with lock:
                result.samples[who].append(sample)
                answered[who] += sample.ok

    with ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="servegate-load") as executor:
        for future in [executor.submit(worker) for _ in range(cfg.concurrency)]:
            future.result()
    result.seconds = time.perf_counter() - began
    if cfg.duration_s is not None and not result.stopped_by.startswith("budget"):
        result.stopped_by = f"duration {cfg.duration_s:g} s"
    if result.seconds >= deadline_s and (cfg.duration_s is None or deadline_s < cfg.duration_s):
        result.stopped_by = "the validation deadline"
    return result
