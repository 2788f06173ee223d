"""``servegate serve``: the bundled server on ``<store>/production/<name>``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from tests.serving.conftest import BundledServer, keras_files_mapped, wait_available
from tests.support.cli import REPO, run_servegate, start_servegate
from tests.support.ports import free_port


def _store_serving_hp2(store: Path, tfs_testdata: Path) -> None:
    """A store whose production serves half_plus_two as version 1 (a link to TF Serving's test model)."""
    production = store / "production" / "hp2"
    production.mkdir(parents=True)
    (production / "1").symlink_to(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123")


def test_serve_serves_the_production_base_path_from_servegate_store(tfs_testdata, tmp_path, request):
    _store_serving_hp2(tmp_path / "store", tfs_testdata)
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {"SERVEGATE_STORE": str(tmp_path / "store"), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = start_servegate("serve", "--name", "hp2", "--port", str(port), "--grpc-port", "0", "--poll-seconds",
                               "0.3", home=tmp_path / "home", env=env, cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = BundledServer(proc, port, 0, log_path)
    request.addfinalizer(server.stop)
    wait_available(server, "hp2")
    response = requests.post(f"{server.rest_url}/v1/models/hp2:predict", json={"instances": [2.0]}, timeout=30)
    assert response.json() == {"predictions": [3.0]}
    assert keras_files_mapped(proc.pid) == []  # a server, as `python -m servegate.serving`: no Keras
    assert server.stop() == 0


def test_serve_without_a_production_base_path_is_a_clear_error(tmp_path):
    result = run_servegate("serve", "--name", "iris", "--store", str(tmp_path), cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert f"error: no production base path for model 'iris' at {tmp_path / 'production' / 'iris'}" in result.stderr


def test_serve_rejects_a_name_that_could_escape_the_store(tmp_path):
    result = run_servegate("serve", "--name", "../etc", "--store", str(tmp_path), cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert "error: --name '../etc': expected a model name" in result.stderr


def test_serve_with_metrics_exports_tensorflow_servings_prometheus_page(tfs_testdata, tmp_path, request):
    from prometheus_client.parser import text_string_to_metric_families

    _store_serving_hp2(tmp_path / "store", tfs_testdata)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = start_servegate("serve", "--name", "hp2", "--store", str(tmp_path / "store"), "--port", str(port),
                               "--grpc-port", "0", "--metrics", home=tmp_path / "home",
                               env={"PYTHONUNBUFFERED": "1"}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    server = BundledServer(proc, port, 0, log_path)
    request.addfinalizer(server.stop)
    wait_available(server, "hp2")
    assert requests.post(f"{server.rest_url}/v1/models/hp2:predict", json={"instances": [2.0]}, timeout=30).ok
    page = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(page)}
    latency = families[":tensorflow:serving:request_latency"]
    assert [s.value for s in latency.samples if s.name.endswith("_count") and s.labels["API"] == "predict"] == [1]
    assert server.stop() == 0
    assert "Traceback" not in server.logs()


def test_serve_refuses_metrics_and_a_monitoring_config_file_together(tmp_path):
    (tmp_path / "production" / "hp2").mkdir(parents=True)
    result = run_servegate("serve", "--name", "hp2", "--store", str(tmp_path), "--metrics",
                           "--monitoring-config-file", str(tmp_path / "m.txt"), home=tmp_path, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert "error: --metrics and --monitoring-config-file: give one of them" in result.stderr


def test_serve_options_become_tensorflow_servings_warm_up_and_monitoring_flags(tmp_path):
    from servegate.cli.serve_command import server_argv

    (tmp_path / "production" / "m").mkdir(parents=True)
    argv = server_argv("m", tmp_path, 8501, 0, "127.0.0.1", 1.0, tmp_path / "mon.txt", warmup=False)
    assert "--enable_model_warmup=false" in argv
    assert f"--monitoring_config_file={tmp_path / 'mon.txt'}" in argv
    default = server_argv("m", tmp_path, 8501, 0, "127.0.0.1", 1.0)
    assert "--enable_model_warmup=true" in default
    assert not [a for a in default if a.startswith("--monitoring_config_file")]
