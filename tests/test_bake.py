"""The bake's parts without servers: TF Serving's Prometheus page -> snapshots -> windows -> alarms,
the loop (a scripted source, no sleeping), the config section and the deploy's up-front check.
The bake against real servers and real models: tests/reliability/test_bake.py."""

from __future__ import annotations

import pytest

from servegate.bake.alarms import evaluate
from servegate.bake.baking import BakeResult, measure_before, run_bake
from servegate.bake.metrics import MetricsUnavailable, Snapshot, parse, window
from servegate.bake.settings import BakeSettings


def page(ok: int, bad: int, latencies_s: list[float], model: str = "m") -> str:
    """A page rendered by the bundled server's own metrics (TF Serving's names, labels and layout)."""
    from servegate.serving.server.metrics import ServingMetrics

    metrics = ServingMetrics()
    for i in range(ok):
        metrics.record_request(model, "OK", "predict", "REST", latencies_s[i % len(latencies_s)])
    for _ in range(bad):
        metrics.record_request(model, "INVALID_ARGUMENT", "predict", "REST", 0.001)
    metrics.record_request(model, "OK", "", "REST", 5.0)  # a status GET: counted, never in the latency
    metrics.record_request("other", "NOT_FOUND", "predict", "REST", 0.001)  # another model
    return metrics.render()


def test_parse_reads_one_models_counts_and_inference_latency_only():
    snap = parse(page(ok=10, bad=3, latencies_s=[0.002]), "m", at=100.0)
    assert snap.requests == {"OK": 11.0, "INVALID_ARGUMENT": 3.0}
    assert snap.observed == 10.0  # the status GET (5 s) is not an inference request
    stats = window(Snapshot(at=90.0), snap)
    assert (stats.requests, stats.errors, stats.errors_by_status) == (14, 3, {"INVALID_ARGUMENT": 3})
    assert stats.p95_ms is not None and 1.98 < stats.p95_ms <= 3.58  # within the bucket holding 2 ms (1.98..3.57 ms)


def test_parse_refuses_a_page_without_tf_servings_metrics():
    with pytest.raises(MetricsUnavailable, match="request_count"):
        parse("# TYPE up gauge\nup 1\n", "m")


def test_window_is_the_difference_and_a_counter_reset_starts_over():
    a = parse(page(ok=10, bad=0, latencies_s=[0.001]), "m", at=0.0)
    b = parse(page(ok=30, bad=5, latencies_s=[0.001, 0.050]), "m", at=10.0)
    stats = window(a, b)
    assert (stats.requests, stats.errors, stats.seconds) == (25, 5, 10.0)
    assert stats.p95_ms > 10  # the new requests include 50 ms ones
    reset = window(b, a)  # counters went down: the server restarted
    assert reset.requests == 11 and reset.errors == 0


def stats(requests: int, errors: int, p95_ms: float | None, seconds: float = 5.0):
    from servegate.bake.metrics import WindowStats

    return WindowStats(seconds, requests, errors, {"INVALID_ARGUMENT": errors} if errors else {},
                       requests - errors, p95_ms)


@pytest.mark.parametrize(("before", "bake", "fired"), [
    (stats(100, 0, 2.0), stats(100, 0, 2.5), []),
    (stats(100, 0, 2.0), stats(100, 30, 2.0), ["error_rate", "error_rate_vs_before"]),
    (stats(100, 4, 2.0), stats(100, 4, 2.0), []),                        # as bad as before: not the new version
    (stats(100, 0, 2.0), stats(100, 3, 2.0), ["error_rate_vs_before"]),  # under the ceiling, up 3 points
    (stats(100, 0, 20.0), stats(100, 0, 70.0), ["p95_latency_vs_before"]),
    (stats(100, 0, 20.0), stats(100, 0, 50.0), []),                      # 2.5x: within max_p95_ratio 3
    (stats(100, 0, 2.0), stats(100, 0, 8.0), []),                        # 4x, but under latency_floor_ms
    (stats(100, 0, 500.0), stats(100, 0, 1500.0), ["p95_latency"]),      # 3x too, absolute first
    (None, stats(100, 30, 2.0), ["error_rate"]),
    (stats(100, 0, 2.0), stats(5, 5, 2.0), []),                          # too few requests to judge
])
def test_alarms_fire_on_limits_and_against_the_window_before(before, bake, fired):
    names = [a.name for a in evaluate(before, bake, BakeSettings())]
    assert names[: len(fired)] == fired and (fired or not names), names


class Scripted:
    """A source whose snapshots are given in advance (errors raise MetricsUnavailable)."""

    def __init__(self, snaps):
        self.snaps = list(snaps)

    def snapshot(self):
        snap = self.snaps.pop(0)
        if isinstance(snap, Exception):
            raise snap
        return snap


class Clock:
    def __init__(self):
        self.now = 0.0

    def sleep(self, s):
        self.now += s

    def __call__(self):
        return self.now


def snap(ok: int, bad: int, at: float) -> Snapshot:
    return parse(page(ok, bad, [0.002]), "m", at=at)


def _bake(source, duration=20.0, interval=5.0, before=None):
    clock = Clock()
    result = BakeResult("metrics", "http://x", duration, interval, 0.0)
    ticks = []
    settings = BakeSettings(duration_s=duration, interval_s=interval)
    out = run_bake(source, result, before, settings, sleep=clock.sleep, clock=clock,
                   on_tick=lambda f, r: ticks.append(f))
    return out, ticks


def test_a_healthy_bake_passes_after_every_interval():
    result, ticks = _bake(Scripted([snap(0, 0, 0), snap(50, 0, 5), snap(100, 0, 10), snap(150, 0, 15),
                                    snap(200, 0, 20)]))
    assert result.verdict == "passed" and result.alarm is None and len(result.ticks) == 4
    assert ticks == [0.25, 0.5, 0.75, 1.0] and result.bake["requests"] == 200


def test_the_first_interval_with_errors_fires_and_ends_the_bake():
    result, ticks = _bake(Scripted([snap(0, 0, 0), snap(40, 20, 5), snap(80, 40, 10)]), before=stats(100, 0, 2.0))
    assert result.verdict == "alarm" and result.alarm["name"] == "error_rate"
    assert result.alarm["figures"]["elapsed_s"] == 5.0 and "first 5.0 s" in result.alarm["message"]
    assert ticks == []  # an alarm returns at once; the caller reports the end


def test_a_failure_that_starts_late_is_judged_on_the_last_interval():
    snaps = [snap(0, 0, 0)] + [snap(1000 * i, 0, 5 * i) for i in range(1, 4)] + [snap(3040, 20, 20)]
    result, _ = _bake(Scripted(snaps))
    assert result.verdict == "alarm" and "last 5.0 s" in result.alarm["message"], result.alarm


def test_one_slow_interval_does_not_fire_the_latency_alarm_alone():
    from servegate.serving.server.metrics import ServingMetrics

    metrics, snaps = ServingMetrics(), []
    for i in range(5):  # 3 intervals of 1000 requests at 2 ms, then one of 100 at 40 ms
        for _ in range(1000 if 0 < i < 4 else 100 if i == 4 else 0):
            metrics.record_request("m", "OK", "predict", "REST", 0.040 if i == 4 else 0.002)
        snaps.append(parse(metrics.render(), "m", at=5.0 * i))
    result, _ = _bake(Scripted(snaps), before=stats(100, 0, 2.0))
    assert result.verdict == "passed", result.alarm
    assert result.ticks[-1]["interval"]["p95_ms"] > 30 and result.bake["p95_ms"] < 10  # 20x for one interval


def test_production_that_stops_answering_fires_after_two_evaluations():
    down = MetricsUnavailable("connection refused")
    result, _ = _bake(Scripted([snap(0, 0, 0), snap(50, 0, 5), down, down]))
    assert result.alarm["name"] == "production_unreachable"


def test_too_few_requests_are_inconclusive_never_passed():
    result, _ = _bake(Scripted([snap(0, 0, 0)] + [snap(1, 1, 5 * i) for i in range(1, 5)]))
    assert result.verdict == "inconclusive" and result.alarm is None
    assert result.not_judged.startswith("2 requests in the bake window, fewer than bake.min_requests (20)")


def test_the_window_before_is_the_window_however_quiet_and_says_it_cannot_judge():
    from servegate.bake.baking import before_not_judged

    quiet = Scripted([snap(100, 2, 0), snap(101, 2, 5)])
    before = measure_before(quiet, 5.0, sleep=lambda s: None)
    assert before.requests == 1  # the 5 s before promotion, not the server's whole lifetime
    assert "1 requests in the 5.0 s before promotion" in before_not_judged(before, BakeSettings())
    assert before_not_judged(stats(100, 0, 2.0), BakeSettings()) is None
    lifetime = measure_before(Scripted([snap(100, 2, 0)]), 0.0, sleep=lambda s: None)
    assert lifetime.requests == 103  # bake.baseline_s: 0 asks for everything since the server started


def _judged(bake: dict, require_traffic: bool, tmp_path):
    from servegate.deploy.bake import judge_bake
    from servegate.deploy.record import AttemptRecord, DeployRequest

    config = tmp_path / "c.yaml"
    config.write_text(f"bake:\n  duration_s: 10\n  require_traffic: {str(require_traffic).lower()}\n")
    request = DeployRequest(model_path="m.keras", name="m", reference="r.csv", store_root=str(tmp_path),
                            config=str(config), production_url="http://127.0.0.1:1")
    judge_bake(AttemptRecord(request=request, work_dir=str(tmp_path), bake=bake))


def test_require_traffic_makes_an_inconclusive_bake_a_rollback_and_leaves_a_judged_one_alone(tmp_path):
    from servegate.deploy.verdict import BakeAlarm

    inconclusive = _bake(Scripted([snap(0, 0, 0), snap(0, 0, 5), snap(0, 0, 10)]), duration=10.0)[0].to_dict()
    passed = _bake(Scripted([snap(0, 0, 0), snap(50, 0, 5), snap(100, 0, 10)]), duration=10.0)[0].to_dict()
    assert (inconclusive["verdict"], passed["verdict"]) == ("inconclusive", "passed")
    _judged(inconclusive, False, tmp_path)
    _judged(passed, True, tmp_path)
    with pytest.raises(BakeAlarm, match=r"bake inconclusive: 0 requests in the bake window") as caught:
        _judged(inconclusive, True, tmp_path)
    assert caught.value.alarm["name"] == "inconclusive" and caught.value.record.bake["alarm"]["name"] == "inconclusive"


def test_the_terminal_says_an_inconclusive_bake_was_not_judged():
    from servegate.cli.deploy_run import summary

    outcome = {"model_name": "m", "verdict": "promoted", "version": 2, "reasons": [], "production_version": 2,
               "bake": {"verdict": "inconclusive", "not_judged": "0 requests in the bake window, fewer than "
                        "bake.min_requests (20): the alarms did not judge"}}
    assert "  bake: inconclusive, not judged: 0 requests in the bake window" in "\n".join(summary(outcome))


def test_bake_plot_is_written(tmp_path):
    from servegate.bake.plots import bake_plot

    result, _ = _bake(Scripted([snap(0, 0, 0), snap(40, 20, 5)]), before=stats(100, 0, 2.0))
    path = bake_plot(result.to_dict(), {"max_error_rate": 0.05, "max_p95_ms": None}, tmp_path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_config_section_defaults_to_no_bake_and_refuses_bad_fields(tmp_path):
    from servegate.validation import load_config
    from servegate.validation.config import ValidationConfigError

    assert load_config(None).bake.duration_s == 0
    path = tmp_path / "c.yaml"
    path.write_text("bake:\n  duration_s: 30\n  max_error_rat: 0.1\n")
    with pytest.raises(ValidationConfigError, match=r"c.yaml: unknown field 'bake.max_error_rat'"):
        load_config(path)
    path.write_text("bake:\n  interval_s: 0\n")
    with pytest.raises(ValidationConfigError, match=r"field 'bake.interval_s'"):
        load_config(path)
    path.write_text("bake:\n  require_traffic: maybe\n")
    with pytest.raises(ValidationConfigError, match=r"field 'bake.require_traffic'"):
        load_config(path)
    assert load_config(None).bake.require_traffic is False


def test_a_bake_without_a_production_url_is_refused_up_front(tmp_path):
    from servegate.deploy.bake import check_bake
    from servegate.deploy.record import AttemptRecord, DeployRequest
    from servegate.errors import ConfigError

    request = DeployRequest(model_path="m.keras", name="m", reference="r.csv", store_root=str(tmp_path), bake_s=30)
    with pytest.raises(ConfigError, match=r"--bake: a bake of 30 s .* no --production-url"):
        check_bake(AttemptRecord(request=request, work_dir=str(tmp_path)))
    request.production_url = "http://127.0.0.1:1"
    check_bake(AttemptRecord(request=request, work_dir=str(tmp_path)))


def test_servegate_deploy_refuses_a_bake_without_a_production_url_before_any_run(tmp_path, tiny_savedmodel):
    """Through the CLI as users meet it (fresh HOME): exit 2, the last line names --bake and what is missing."""
    import json

    from tests.support.cli import REPO, run_servegate

    (tmp_path / "ref.csv").write_text("features_0,features_1,features_2,features_3\n0.1,0.2,0.3,0.4\n")
    env = {"SERVEGATE_HOME": str(tmp_path / "sg"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PREFECT_API_URL": ""}
    result = run_servegate("deploy", "--model", str(tiny_savedmodel), "--name", "m", "--reference",
                           str(tmp_path / "ref.csv"), "--store", str(tmp_path / "store"), "--bake", "30", "--json",
                           home=tmp_path / "home", env=env, cwd=REPO)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--bake: a bake of 30 s" in result.stderr.strip().splitlines()[-1]
    assert json.loads(result.stdout)["verdict"] == "error" and "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any MLflow run
