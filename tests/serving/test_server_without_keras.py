"""The bundled server runs without Keras (and so without pandas and scikit-learn), as TF Serving does."""

from __future__ import annotations

import subprocess
import sys

import requests

from tests.conftest import REPO_ROOT
from tests.serving.conftest import keras_files_mapped, launch, wait_available

def test_the_bundled_server_serves_a_keras_export_without_importing_keras(tiny_savedmodel, tmp_path, request):
    base = tmp_path / "base"
    base.mkdir()
    (base / "1").symlink_to(tiny_savedmodel)
    server = launch(["--model_name=tiny", f"--model_base_path={base}"], tmp_path / "server.log")
    request.addfinalizer(server.stop)
    wait_available(server, "tiny")
    reply = requests.post(f"{server.rest_url}/v1/models/tiny:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]},
                          timeout=30)
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 1, reply.text
    keras_files = keras_files_mapped(server.proc.pid)
    assert keras_files == [], keras_files[:5]
    assert server.stop() == 0


def _probe(env_extra: dict[str, str]) -> str:
    code = ("import sys\nfrom servegate.serving.server.without_keras import keep_keras_out\n"
            "kept_out = keep_keras_out()\nimport tensorflow as tf\n"
            "print(kept_out, sys.modules.get('keras') is not None, 'pandas' in sys.modules)")
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_keep_keras_out_blocks_keras_and_its_imports_before_tensorflow():
    assert _probe({}) == "True False False"


def test_servegate_serving_keras_lets_keras_back_in():
    assert _probe({"SERVEGATE_SERVING_KERAS": "1"}) == "False True True"
