"""The local Prefect API server that ``servegate deploy`` starts early when no PREFECT_API_URL is set."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from servegate.flows.local_api import LocalPrefectServer, startup_timeout_s

pytestmark = pytest.mark.slow


def test_starts_answers_and_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    server = LocalPrefectServer.launch()
    try:
        assert startup_timeout_s() > 0
        server.wait_until_healthy(max(startup_timeout_s(), 60))
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=5) as reply:
            assert reply.status == 200
        process = server.process
    finally:
        server.stop()
    assert process.poll() is not None  # reaped
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.api_url}/health", timeout=2)
    server.stop()  # twice is fine
