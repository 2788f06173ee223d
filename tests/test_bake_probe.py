"""Where production exposes no metrics, the probe of reference rows stands in: against a real bundled
server started without ``--monitoring_config_file`` (its metrics page is a 404)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from servegate.bake.baking import BakeResult, MetricsSource, measure_before, run_bake
from servegate.bake.metrics import MetricsUnavailable
from servegate.bake.probe import Probe
from servegate.bake.settings import BakeSettings


@pytest.fixture(scope="module")
def server_without_metrics(tmp_path_factory, tiny_savedmodel):
    from servegate.model_store import ModelStore
    from tests.serving.conftest import launch, wait_available

    root = tmp_path_factory.mktemp("probe-store")
    store = ModelStore(root)
    store.promote("probed", store.stage("probed", tiny_savedmodel))
    server = launch(["--model_name=probed", f"--model_base_path={root / 'production' / 'probed'}"],
                    root / "server.log", grpc=False)
    wait_available(server, "probed")
    yield server
    server.stop()
    assert "Traceback" not in server.logs()


def test_no_metrics_page_is_said_and_the_probe_counts_real_answers(server_without_metrics):
    url = server_without_metrics.rest_url
    with pytest.raises(MetricsUnavailable, match=r"/monitoring/prometheus/metrics: HTTP 404"):
        MetricsSource(url + "/monitoring/prometheus/metrics", "probed").snapshot()
    good = [{"features": np.full((1, 4), 0.1, dtype="float32")}]
    with Probe(url, "probed", good, rate=50.0) as probe:
        before = measure_before(probe, 0.6)
    assert before.requests >= 10 and before.errors == 0 and before.p95_ms is not None and before.p95_ms > 0


def test_the_probe_fires_the_error_alarm_when_production_fails_its_rows(server_without_metrics):
    wrong = [{"features": np.full((1, 3), 0.1, dtype="float32")}]  # 3 features for a 4-feature model: 400
    settings = BakeSettings(duration_s=3, interval_s=1, min_requests=10)
    with Probe(server_without_metrics.rest_url, "probed", wrong, rate=50.0) as probe:
        result = run_bake(probe, BakeResult("probe", server_without_metrics.rest_url, 3, 1, time.time()), None, settings)
    assert result.verdict == "alarm" and result.alarm["name"] == "error_rate", result.alarm
    assert "HTTP 400" in result.alarm["message"] and result.alarm["figures"]["elapsed_s"] < 1.5
