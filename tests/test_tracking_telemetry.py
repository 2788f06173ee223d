"""MLflow's usage telemetry stays off in every process that tracks through servegate: its config thread,
failing offline, pops an environment variable that other threads' MLflow calls may be reading (a KeyError
in a worker's flow run). A user's own setting is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROBE = """
import json, os
import servegate.tracking.stores  # how a flow run's tracker first reaches MLflow
from mlflow.telemetry.client import get_telemetry_client
print(json.dumps({"client": get_telemetry_client() is not None,
                  "session": "_MLFLOW_TELEMETRY_SESSION_ID" in os.environ,
                  "setting": os.environ.get("MLFLOW_DISABLE_TELEMETRY")}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MLFLOW_DISABLE_TELEMETRY", "CI", "PYTEST_CURRENT_TEST", "DO_NOT_TRACK")}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_telemetry_is_off_where_servegate_imports_mlflow():
    assert _probe() == {"client": False, "session": False, "setting": "true"}


def test_a_users_own_setting_is_kept():
    assert _probe(MLFLOW_DISABLE_TELEMETRY="false")["setting"] == "false"
