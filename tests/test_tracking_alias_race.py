"""Two deploys of one model set the same registry alias at once (the challenger, at registration).

MLflow's SQL store reads the alias's row, then inserts or updates it: two
writers in the same instant can both insert, and the database refuses the
second on the alias's unique key. Two real processes race here on one SQLite
registry, each setting a new alias on the same 50 ms ticks: MLflow's own call
loses some of those races, servegate's ``set_alias`` none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_RACER = """
import json, os, sys, time
from mlflow import MlflowClient
from servegate.tracking.registry import set_alias
uri, version, how, stop_file = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
client = MlflowClient(uri, registry_uri=uri)
setter = set_alias if how == "servegate" else lambda c, *a: c.set_registered_model_alias(*a)
lost, tried = [], 0
while tried < 40 and not os.path.exists(stop_file):
    time.sleep(0.05 - time.time() % 0.05)  # both processes write on the same tick, to the same alias
    alias = "a%d" % round(time.time() / 0.05)
    tried += 1
    try:
        setter(client, "m", alias, version)
    except Exception as exc:
        lost.append(str(exc)[:300])
        if how == "mlflow":
            open(stop_file, "w").close()  # the race is shown: stop both
print(json.dumps({"lost": lost, "tried": tried}))
"""


def _race(tmp_path: Path, how: str) -> list[dict]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", f"file://{tmp_path}")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, uri, str(v), how, str(tmp_path / "stop")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
              for v in (1, 2)]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.reliability  # a race proof: four processes writing on shared ticks
def test_mlflows_own_alias_write_loses_a_race_servegates_does_not(tmp_path: Path):
    (tmp_path / "mlflow").mkdir()
    mlflow_side = _race(tmp_path / "mlflow", "mlflow")
    lost = [message for result in mlflow_side for message in result["lost"]]
    assert lost, f"no lost race in {sum(r['tried'] for r in mlflow_side)} writes: the race this test relies on"
    assert all("UNIQUE constraint failed" in message for message in lost), lost

    (tmp_path / "servegate").mkdir()
    ours = _race(tmp_path / "servegate", "servegate")
    assert [r["lost"] for r in ours] == [[], []]
    assert all(r["tried"] == 40 for r in ours)


def test_an_alias_error_that_is_not_a_lost_race_is_raised_at_once(tmp_path: Path):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from servegate.tracking.registry import set_alias

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("m")
    calls = []

    class Counting:
        def set_registered_model_alias(self, *args):
            calls.append(args)
            return client.set_registered_model_alias(*args)

    try:
        set_alias(Counting(), "m", "challenger", 7)  # no version 7
    except MlflowException as exc:
        assert "not found" in str(exc).lower() or "does not exist" in str(exc).lower(), exc
    else:
        raise AssertionError("an alias on a missing version was accepted")
    assert len(calls) == 1
