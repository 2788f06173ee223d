"""A production bundled server under steady load from a second process while the pipeline promotes
a version and then rolls it back: zero failed requests.

The measurement is ``benchmarks/bench_availability.py``'s (which also reports
p99 latency during the swaps beside p99 outside them); this test asserts no
timing, only that no request failed and that both swaps really happened.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_availability import make_model_files, measure_swap


# Long (a whole deploy or more): CI's second step runs it (-m reliability); the default suite stays under 10 minutes.
@pytest.mark.reliability
@pytest.mark.slow
def test_promote_then_rollback_under_load_fails_no_request(tmp_path, prefect_api_url):
    keras_file, savedmodel, reference = make_model_files(tmp_path)
    env = {**__import__("os").environ, "PREFECT_API_URL": prefect_api_url}
    m = measure_swap(tmp_path / "swap", keras_file, savedmodel, reference, env=env, rate=40.0, steady_s=1.5)
    assert m.served_during == [[2], [1]] or m.served_during[0][-1] == 2 and m.served_during[1] == [1], m.served_during
    assert len(m.windows) >= 2, m.windows
    assert len(m.records) > 100 and m.latencies(True), (len(m.records), m.windows)
    assert m.failures == [], m.failures[:5]
