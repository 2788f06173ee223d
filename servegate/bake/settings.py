"""The ``bake:`` section of the config: how long production is watched after a promotion, and its alarms.

The default is **no bake** (``duration_s: 0``): a CI job that deploys takes as
long as it did before, and a pipeline that promotes into a production server
with real traffic opts in with ``bake: {duration_s: 300}`` or
``servegate deploy --bake 300`` (the flag wins over the file). A bake needs
``--production-url``: it watches that server, and the deploy has already
waited there for the new version ("verify production").

Alarms (each can be switched off with ``null``):

- ``max_error_rate``: non-OK requests / requests in the bake window, absolute;
- ``max_error_rate_increase``: the bake window's error rate minus the window
  before promotion's (so a production that already answers some bad client
  requests with errors is not held against the new version);
- ``max_p95_ms``: p95 latency of successful inference requests, absolute;
- ``max_p95_ratio``: p95 over the p95 before promotion, once the p95 is above
  ``latency_floor_ms`` (below it the difference is noise, not a cliff).

A window with fewer than ``min_requests`` requests is not judged: a bake
that never saw that many is ``inconclusive``, recorded as such (MLflow, the
``--json`` outcome), and promoted unless ``require_traffic`` is set, which
makes it a rollback. The window before promotion is the ``baseline_s``
(default ``interval_s``) seconds before it, as quiet as it was: with fewer
than ``min_requests`` requests there, the alarms against it do not judge and
only the absolute limits do (``baseline_s: 0`` compares with everything
production counted since it started, asked for by name). Every
``interval_s`` the window since the bake started is judged (and, for errors,
the last interval too); the first alarm ends the bake and production is
rolled back. The latency alarms are deliberately loose (3x, above 10 ms):
measured on a busy 2-core host, one healthy version's p95 varied 3x between
2 s windows, and a false alarm rolls back a good model.
"""

from __future__ import annotations

from pydantic import Field, StrictBool

from servegate.config_section import Section

#: Where TF Serving (and the bundled server) serve the Prometheus page: PrometheusExporter::kPrometheusPath.
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"


class BakeSettings(Section):
    """``bake:``: watch production after promotion; roll back when an alarm fires."""

    duration_s: float = Field(0.0, ge=0, le=21600, description="how long to watch production; 0: no bake")
    interval_s: float = Field(5.0, gt=0, le=3600, description="how often the alarms are judged")
    baseline_s: float | None = Field(
        None, ge=0, le=3600,
        description="the window before promotion (default: interval_s); 0: everything production counted since it started")
    metrics_url: str | None = Field(
        None, description="production's Prometheus page; default: the production URL + /monitoring/prometheus/metrics")
    probe_rate: float = Field(5.0, gt=0, le=1000, description="requests/s of reference rows when production has no metrics")
    request_timeout_s: float = Field(5.0, gt=0, description="one metrics scrape or probe request")
    min_requests: int = Field(20, ge=1, description="a window with fewer requests is not judged")
    require_traffic: StrictBool = Field(
        False, description="a bake that saw fewer than min_requests requests (inconclusive) rolls production back")
    max_error_rate: float | None = Field(0.05, ge=0, le=1, description="absolute limit on the bake window's error rate")
    max_error_rate_increase: float | None = Field(0.01, ge=0, le=1, description="error rate over the one before promotion")
    max_p95_ms: float | None = Field(1000.0, gt=0, description="absolute limit on p95 latency (successful requests)")
    max_p95_ratio: float | None = Field(3.0, gt=0, description="p95 latency over the p95 before promotion")
    latency_floor_ms: float = Field(10.0, ge=0, description="a p95 under this never fires the ratio alarm")

    def before_window_s(self) -> float:
        return self.interval_s if self.baseline_s is None else self.baseline_s

    def metrics_url_for(self, production_url: str | None) -> str | None:
        if self.metrics_url:
            return self.metrics_url
        return production_url.rstrip("/") + DEFAULT_METRICS_PATH if production_url else None
