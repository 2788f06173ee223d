"""Production's error rate and latency from TensorFlow Serving's Prometheus page.

Read with ``prometheus_client``'s text parser, for one model:

- ``:tensorflow:serving:request_count{model_name,status}``: every request by
  outcome; a status other than ``OK`` is an error;
- ``:tensorflow:serving:request_latency{model_name,API,entrypoint}``: the
  latency histogram (microseconds, successful requests). Only inference
  requests count (``API`` not empty): status and metadata GETs are not what
  clients wait for.

Counters are cumulative since the server started, so a window is the
difference of two :class:`Snapshot`\\ s (a counter that went down means the
server restarted: the later snapshot alone is the window, as Prometheus'
``rate`` treats resets). The p95 is interpolated within its bucket, as
Prometheus' ``histogram_quantile`` does. Snapshots hold plain values only:
they travel in the attempt record.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from servegate.errors import ServingError

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"


class MetricsUnavailable(ServingError):
    """Production's Prometheus page could not be read, or is not TF Serving's."""


@dataclass
class Snapshot:
    """Cumulative counts for one model at one moment (epoch seconds)."""

    at: float
    requests: dict[str, float] = field(default_factory=dict)  # status -> requests
    bounds_us: list[float] = field(default_factory=list)      # finite histogram upper bounds, ascending
    cumulative: list[float] = field(default_factory=list)     # observations <= each bound
    observed: float = 0.0                                     # every observation (the +Inf bucket)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Snapshot":
        return cls(**data)


@dataclass
class WindowStats:
    """What production did between two snapshots."""

    seconds: float
    requests: int
    errors: int
    errors_by_status: dict[str, int]
    latency_count: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WindowStats":
        return cls(**{k: v for k, v in data.items() if k != "error_rate"})


def parse(text: str, model_name: str, at: float | None = None) -> Snapshot:
    """The model's counts on a Prometheus text page; :class:`MetricsUnavailable` when the page
    has no ``request_count`` family (not TF Serving's page, or monitoring is off)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    except ValueError as exc:
        raise MetricsUnavailable(f"not a Prometheus text page: {exc}") from None
    if REQUEST_COUNT not in families:
        raise MetricsUnavailable(f"the page has no {REQUEST_COUNT} metric")
    snap = Snapshot(at=time.time() if at is None else at)
    for sample in families[REQUEST_COUNT].samples:
        if sample.labels.get("model_name") == model_name and not sample.name.endswith("_created"):
            status = sample.labels.get("status", "")
            snap.requests[status] = snap.requests.get(status, 0.0) + sample.value
    buckets: dict[float, float] = {}
    latency = families.get(REQUEST_LATENCY)
    for sample in latency.samples if latency else ():
        labels = sample.labels
        if sample.name.endswith("_bucket") and labels.get("model_name") == model_name and labels.get("API"):
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    snap.observed = buckets.pop(math.inf, 0.0)
    snap.bounds_us = sorted(buckets)
    snap.cumulative = [buckets[b] for b in snap.bounds_us]
    return snap


def scrape(url: str, model_name: str, timeout_s: float = 5.0) -> Snapshot:
    """One read of ``url`` (a Prometheus page); :class:`MetricsUnavailable` naming the URL on failure."""
    import requests

    try:
        reply = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        raise MetricsUnavailable(f"metrics page {url}: {type(exc).__name__}: {exc}") from None
    if reply.status_code != 200:
        raise MetricsUnavailable(f"metrics page {url}: HTTP {reply.status_code}")
    try:
        return parse(reply.text, model_name)
    except MetricsUnavailable as exc:
        raise MetricsUnavailable(f"metrics page {url}: {exc}") from None


def window(before: Snapshot, after: Snapshot) -> WindowStats:
    """What happened between ``before`` and ``after`` (``after`` alone after a counter reset)."""
    reset = any(after.requests.get(k, 0.0) < v for k, v in before.requests.items()) or after.observed < before.observed
    base = Snapshot(at=before.at) if reset else before
    statuses = set(after.requests) | set(base.requests)
    counts = {s: int(round(after.requests.get(s, 0.0) - base.requests.get(s, 0.0))) for s in statuses}
    errors = {s: n for s, n in counts.items() if s != "OK" and n > 0}
    old = dict(zip(base.bounds_us, base.cumulative))
    cumulative = [c - old.get(b, 0.0) for b, c in zip(after.bounds_us, after.cumulative)]
    observed = after.observed - base.observed
    return WindowStats(seconds=round(after.at - before.at, 3), requests=sum(counts.values()),
                       errors=sum(errors.values()), errors_by_status=errors, latency_count=int(round(observed)),
                       p95_ms=quantile_ms(0.95, after.bounds_us, cumulative, observed))


def quantile_ms(q: float, bounds_us: list[float], cumulative: list[float], observed: float) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket holding the rank (ms)."""
    if observed <= 0:
        return None
    rank = q * observed
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds_us, cumulative):
        if count >= rank:
            inside = count - below
            fraction = (rank - below) / inside if inside > 0 else 1.0
            return round((lower + (bound - lower) * fraction) / 1000.0, 4)
        lower, below = bound, count
    return round(lower / 1000.0, 4)  # in the +Inf bucket: the highest finite bound, as Prometheus answers

