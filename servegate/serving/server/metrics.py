"""TensorFlow Serving's Prometheus metrics, under its names, labels, buckets and text layout.

TensorFlow Serving records these whether or not they are exported (the
``--monitoring_config_file``'s ``prometheus_config`` only adds the HTTP page),
and so does the bundled server:

- ``:tensorflow:serving:request_count{model_name,status}`` (counter): every
  REST request and every gRPC Predict, with the canonical code name of its
  outcome (``OK``, ``INVALID_ARGUMENT``, ``NOT_FOUND``, ...).
- ``:tensorflow:serving:request_latency{model_name,API,entrypoint}``
  (histogram, microseconds): successful requests only. ``entrypoint`` is
  ``REST`` or ``GRPC``; ``API`` is the REST verb (``predict``, ``classify``,
  ``regress``; empty for status/metadata GETs) or the gRPC method
  (``Predict``).
- ``:tensorflow:serving:model_warmup_latency{model_path,status}`` (histogram,
  microseconds): one sample per warm-up replay; ``status`` is ``OK`` or
  ``CODE: message``.

Names come from TensorFlow's metric names with ``/`` turned into ``:``; the
latency buckets are TensorFlow's ``Buckets::Exponential(10, 1.8, 33)``.
Values are held by ``prometheus_client`` metrics (thread-safe); :meth:`render`
writes them in TensorFlow Serving's layout, which differs from
``prometheus_client.generate_latest`` in what a scraper sees: a counter's
samples carry the bare name (no ``_total``), bucket limits are printed with
six significant digits (``le="32.4"``), and there are no ``_created`` series.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
MODEL_WARMUP_LATENCY = ":tensorflow:serving:model_warmup_latency"
REQUEST_LOG_RECORDS = ":servegate:request_log:records"
REQUEST_LOG_DROPPED = ":servegate:request_log:dropped"

# monitoring::Buckets::Exponential(10, 1.8, 33): 10 us .. ~24 minutes, then +Inf.
LATENCY_BUCKETS_US: tuple[float, ...] = tuple(10.0 * 1.8**i for i in range(33)) + (math.inf,)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServingMetrics:
    """One server's metrics (a private registry, so tests and servers do not share counts)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._count = Counter(REQUEST_COUNT, "The total number of requests.", ["model_name", "status"],
                              registry=self.registry)
        self._latency = Histogram(
            REQUEST_LATENCY, "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"], buckets=LATENCY_BUCKETS_US, registry=self.registry)
        self._warmup = Histogram(
            MODEL_WARMUP_LATENCY, "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"], buckets=LATENCY_BUCKETS_US, registry=self.registry)
        # servegate's own: the request log (logging_config) written and dropped, per model.
        self._log_records = Counter(REQUEST_LOG_RECORDS, "Requests written to the request log.", ["model_name"],
                                    registry=self.registry)
        self._log_dropped = Counter(
            REQUEST_LOG_DROPPED,
            "Sampled requests not written to the request log (reason: queue_full or error).",
            ["model_name", "reason"], registry=self.registry)

    def record_request(self, model_name: str, status: str, api: str, entrypoint: str, seconds: float) -> None:
        """One finished request; its latency counts only when it succeeded (as in TensorFlow Serving)."""
        self._count.labels(model_name, status).inc()
        if status == "OK":
            self._latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def record_warmup(self, model_path: str, status: str, seconds: float) -> None:
        self._warmup.labels(model_path, status).observe(seconds * 1e6)

    def record_log_written(self, model_name: str, count: int = 1) -> None:
        self._log_records.labels(model_name).inc(count)

    def record_log_dropped(self, model_name: str, reason: str) -> None:
        self._log_dropped.labels(model_name, reason).inc()

    def render(self) -> str:
        """The Prometheus text page, laid out as TensorFlow Serving's PrometheusExporter writes it."""
        lines: list[str] = []
        for family in self.registry.collect():
            lines.append(f"# TYPE {family.name} {family.type}")
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                name = family.name if sample.name == family.name + "_total" else sample.name
                labels = ",".join(f'{key}="{_escape(_label_value(key, value))}"'
                                  for key, value in sample.labels.items())
                lines.append(f"{name}{{{labels}}} {_number(sample.value)}")
        return "\n".join(lines) + "\n"


def _label_value(key: str, value: str) -> str:
    # TensorFlow prints bucket limits with absl::StrCat, i.e. six significant digits.
    if key != "le":
        return value
    limit = float(value)
    return "+Inf" if math.isinf(limit) else f"{limit:.6g}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


#: The server's metrics (one process serves one set, as TensorFlow's global registry does).
METRICS = ServingMetrics()
