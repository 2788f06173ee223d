"""The ``servegate sync`` loop: a pass per model every interval, a heartbeat per node, Prometheus metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from servegate.errors import ServegateError
from servegate.object_store.location import S3Location
from servegate.object_store.sync import (ModelReport, SyncTarget, converge, present_versions,
                                         write_heartbeat)


class SyncMetrics:
    """Gauges and counters on their own registry, served over HTTP when a port is given."""

    def __init__(self, port: int | None, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.wanted = Gauge("servegate_sync_wanted_version", "Version production serves", ["model"],
                            registry=self.registry)
        self.present = Gauge("servegate_sync_present_versions", "Versions in the local base path", ["model"],
                             registry=self.registry)
        self.lag = Gauge("servegate_sync_lag_seconds", "Seconds behind production (0: in step)", ["model"],
                         registry=self.registry)
        self.errors = Counter("servegate_sync_errors", "Failed passes", ["model"], registry=self.registry)
        self.last_pass = Gauge("servegate_sync_last_pass_timestamp_seconds", "When the last pass ended",
                               registry=self.registry)
        if port is not None:
            start_http_server(port, addr=host, registry=self.registry)

    def update(self, reports: dict[str, ModelReport]) -> None:
        for name, report in reports.items():
            self.wanted.labels(name).set(-1 if report.wanted is None else report.wanted)
            self.present.labels(name).set(len(report.present))
            self.lag.labels(name).set(report.lag_s)
            if report.last_error:
                self.errors.labels(name).inc()
        self.last_pass.set(time.time())


@dataclass
class SyncOptions:
    location: S3Location
    targets: list[SyncTarget]
    node: str
    serving_url: str | None = None
    interval_s: float = 2.0
    once: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


def one_pass(client: Any, options: SyncOptions) -> dict[str, ModelReport]:
    """Every model once; an error is the model's ``last_error`` (the others still converge)."""
    import requests

    reports = {}
    for target in options.targets:
        report = reports[target.name] = ModelReport()
        try:
            converge(client, options.location, target, options.serving_url, report)
        except (ServegateError, OSError, requests.RequestException) as exc:
            # What production serves and the lag stay as the pass learnt them before it failed. With a
            # serving URL, what the node serves is what its server answers: after a failed pass that is
            # nothing known ([]), never the versions on disk (a fleet view reads None as "no server to
            # ask" and would count a node whose server is down as serving them).
            report.present = present_versions(target.base_path)
            report.available = [] if options.serving_url else None
            report.last_error = f"{type(exc).__name__}: {exc}"
    return reports


def run_sync(options: SyncOptions, say: Any = print) -> int:
    """Loop (or one pass with ``once``); exit 1 when ``once`` met an error, 0 otherwise."""
    from servegate.object_store import ObjectModelStore

    store = ObjectModelStore.open(options.location)  # every up-front check, before any pass
    metrics = SyncMetrics(options.metrics_port, options.metrics_host)
    while True:
        reports = one_pass(store.client, options)
        try:
            write_heartbeat(store.client, options.location, options.node, reports)
        except Exception as exc:  # noqa: BLE001 - the node keeps serving; the next pass tries again
            say(f"sync: heartbeat not written: {exc}")
        metrics.update(reports)
        for name, report in reports.items():
            say(f"sync: {name}: production {report.wanted}, present {report.present}, available "
                f"{report.available}, lag {report.lag_s}s" + (f", error: {report.last_error}"
                                                              if report.last_error else ""))
        if options.once:
            return 1 if any(r.last_error for r in reports.values()) else 0
        time.sleep(options.interval_s)
