"""Command line and start-up: TensorFlow Serving's flags, unknown flags, and the exits a runner
must recognise (no base path, a model that never loads, a label on an unavailable version,
a port in use). Each case is a real ``python -m servegate.serving`` process.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.support.ports import free_port


def _run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "servegate.serving", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def test_unknown_flag_exits_2_naming_it():
    result = _run("--model_base_path=/x", "--rest_api_port=1", "--enable_bogus=true")
    assert result.returncode == 2
    assert "unrecognized arguments: --enable_bogus=true" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "either --model_base_path or --model_config_file must be given"),
        # both given: the config file wins, as in TensorFlow Serving (so /x is never looked at)
        (["--model_base_path=/x", "--model_config_file=/y/models.config"], "model config file /y/models.config: cannot be read"),
        (["--model_base_path=/x", "--port=0"], "both --port and --rest_api_port are 0"),
        (["--model_base_path=/x", "--port=70000"], "--port=70000: expected a port number"),
        (["--model_config_file=/nonexistent/models.config"], "model config file /nonexistent/models.config: cannot be read"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(args, message):
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_base_path_exits_1(tmp_path):
    result = _run(f"--model_base_path={tmp_path / 'absent'}", "--port=0", f"--rest_api_port={free_port()}")
    assert result.returncode == 1
    assert f"Could not find base path {tmp_path / 'absent'} for servable default" in result.stderr


def test_model_that_never_loads_exits_1_after_retries_with_ports_closed(tfs_testdata):
    rest = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "servegate.serving", f"--model_base_path={tfs_testdata / 'bad_half_plus_two'}",
         "--port=0", f"--rest_api_port={rest}", "--max_num_load_retries=2", "--load_retry_interval_micros=300000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
    )
    try:
        saw_refused = False
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{rest}/v1/models/default", timeout=1)
                pytest.fail("the REST port opened although the model never loaded")
            except requests.ConnectionError:
                saw_refused = True
            time.sleep(0.1)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert saw_refused
    assert proc.returncode == 1
    assert output.count("failed (attempt") == 3  # the first try and two retries
    assert "Failed to start server. Error: Loading servable {name: default version: 123} failed: NOT_FOUND" in output


def test_label_on_an_unloaded_version_exits_1(tfs_testdata, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "m" '
        f'base_path: "{tfs_testdata / "saved_model_half_plus_two_2_versions"}" model_platform: "tensorflow" '
        'version_labels { key: "stable" value: 123 } } }'
    )
    result = _run(f"--model_config_file={config}", "--port=0", f"--rest_api_port={free_port()}")
    assert result.returncode == 1
    assert ("Request to assign label 'stable' to version 123 of model m, which is not currently available "
            "for inference") in result.stderr


def test_rest_port_in_use_exits_1(tfs_testdata):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}", "--port=0",
                      f"--rest_api_port={port}")
    assert result.returncode == 1
    assert f"cannot listen for REST on 127.0.0.1:{port}" in result.stderr


def test_grpc_port_in_use_exits_1(tfs_testdata):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}", f"--port={port}")
    assert result.returncode == 1
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in result.stderr


def test_rest_socket_is_created_as_tcp():
    # asyncio turns on TCP_NODELAY for accepted connections only when the listening socket says
    # it is TCP; without it every REST response stalls ~40 ms on a delayed ACK.
    from servegate.serving.server.main import _bind_socket

    sock = _bind_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
