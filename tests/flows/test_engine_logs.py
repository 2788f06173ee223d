"""The worker's flow-run process (``python -m servegate.flows.engine``) keeps CUDA's probe out of the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The flow's import is where TensorFlow arrives: stand in for it with TensorFlow's import itself.
_SCRIPT = """
import os, sys
import prefect.flow_engine as fe
from servegate.flows import engine

def load_flow_run(flow_run_id):
    import tensorflow as tf
    tf.constant(1.0)
    print("TF_CPP_MIN_LOG_LEVEL=" + os.environ.get("TF_CPP_MIN_LOG_LEVEL", "(unset)"))
    raise SystemExit(0)

fe.load_flow_run = load_flow_run
engine.main(["00000000-0000-0000-0000-000000000000"])
"""


@pytest.mark.reliability  # a flow-run process importing TensorFlow (~9 s): CI's second step
def test_the_flow_run_process_does_not_log_cuda_probing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TF_CPP_MIN_LOG_LEVEL=3" in result.stdout
    assert "cuInit" not in result.stderr, result.stderr[-3000:]


@pytest.mark.reliability  # a flow-run process importing TensorFlow (~9 s): CI's second step
def test_a_log_level_the_worker_sets_is_kept(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="1")
    result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TF_CPP_MIN_LOG_LEVEL=1" in result.stdout
