"""``servegate demo`` end to end, in-process: train, v1 promoted, a production
server on the production base path recording its traffic, a broken model
rejected, an improved one promoted and swapped in while a client queries
production: no failed request. Both later deploys are judged on production's
recorded traffic by the shadow check: it fails the broken one and passes the
improved one."""

from __future__ import annotations

import pytest


# Long (a whole deploy or more): CI's second step runs it (-m reliability); the default suite stays under 10 minutes.
@pytest.mark.reliability
@pytest.mark.slow
def test_demo_tells_the_whole_story(tmp_path, prefect_harness):
    from servegate.demo.run import run_demo
    from servegate.model_store import ModelStore
    from servegate.tracking import Tracker

    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", echo=lines.append)
    text = "\n".join(lines)
    assert summary.ok, text
    verdicts = [(o["variant"], o["version"], o["verdict"]) for o in summary.outcomes]
    assert verdicts == [("baseline", 1, "promoted"), ("broken", 2, "rejected"), ("improved", 3, "promoted")]
    # production was verified by the flow itself (a production server was configured)
    assert "time.verify_production_s" in summary.outcomes[2]["figures"]
    # the client saw both versions answer and not one request fail
    assert summary.traffic.failed == 0 and summary.traffic.sent > 10
    assert set(summary.traffic.versions_seen) == {1, 3}
    assert summary.production_version == 3

    # the shadow check ran on production's recorded traffic: it judged both later deploys
    broken, improved = summary.outcomes[1], summary.outcomes[2]
    for outcome in (broken, improved):
        assert "shadow" not in {g["check"] for g in outcome["gates_not_run"]}, outcome["gates_not_run"]
        assert 111 <= outcome["figures"]["shadow.requests_replayed"] <= 500  # the burst: 442 rows, 4 a request
    assert improved["figures"]["shadow.rel_change_p99"] <= 0.75
    assert broken["figures"]["shadow.rel_change_p99"] > 0.75
    assert any(r.startswith("shadow") for r in broken["reasons"]), broken["reasons"]
    assert "shadow check on recorded production traffic: requests_replayed" in text
    traffic = list((tmp_path / "demo" / "traffic").glob("diabetes-*.tfrecord"))
    assert traffic and all(p.stat().st_mode & 0o777 == 0o600 for p in traffic)
    assert "Traceback" not in (tmp_path / "demo" / "production-server.log").read_text()

    status = ModelStore(tmp_path / "demo" / "store").status("diabetes")
    assert status.versions["production"] == [1, 3] and status.versions["rejected"] == [2]
    tracker = Tracker(summary.tracking_uri)
    assert tracker.alias_version("diabetes", "champion").tags["serving_version"] == "3"
    # the summary ends with the commands that open both UIs on these runs
    assert "prefect" in text.lower() and f"mlflow ui --backend-store-uri {summary.tracking_uri}" in text
