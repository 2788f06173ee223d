"""A CI job re-run with the model production already serves: ``unchanged``, and nothing created.

(Its first deploy also shows that the ``time.*`` figures count the export made before the flow.)

The whole story as CI meets it (a subprocess in a brand-new HOME, the local Prefect, MLflow in
SQLite): a deploy promotes version 1; the same command again exits 0 with verdict ``unchanged``,
opens no MLflow run and stages no version; ``--force-new-version`` deploys version 2.
"""

from __future__ import annotations

import pytest

from tests.support.cli import json_of, rows, run_servegate


@pytest.mark.reliability  # two whole deploys
@pytest.mark.slow
def test_rerun_is_unchanged_and_the_flag_forces_a_new_version(tmp_path, tfs_testdata):
    import numpy as np
    import pandas as pd

    home = tmp_path / "home"
    home.mkdir()
    model = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    reference = tmp_path / "ref.parquet"
    x = np.linspace(0, 1, 16, dtype="float32")
    pd.DataFrame({"x": x, "label": 0.5 * x + 2}).to_parquet(reference)
    args = ("deploy", "--model", str(model), "--name", "hp2", "--reference", str(reference), "--json")
    mlflow_db = home / ".servegate" / "mlflow.db"
    store = home / ".servegate" / "store"

    first = run_servegate(*args, home=home)
    assert first.returncode == 0, first.stderr[-3000:]
    promoted = json_of(first)
    assert promoted["verdict"] == "promoted" and promoted["version"] == 1
    # the figures (and so the MLflow metrics) count the export the preflight made, as timings do
    assert promoted["figures"]["time.export_model_s"] == promoted["timings"]["export_model"] > 0.05, promoted
    from servegate.tracking import Tracker

    metrics = Tracker(f"sqlite:///{mlflow_db}").client.get_run(promoted["mlflow_run_id"]).data.metrics
    assert metrics["time.export_model_s"] == promoted["timings"]["export_model"]
    runs = rows(mlflow_db, "runs")

    again = run_servegate(*args, home=home)
    assert again.returncode == 0, again.stderr[-3000:]
    outcome = json_of(again)
    assert (outcome["verdict"], outcome["version"], outcome["mlflow_run_id"]) == ("unchanged", 1, None), outcome
    assert rows(mlflow_db, "runs") == runs
    assert sorted(p.name for p in (store / "production" / "hp2").iterdir()) == ["1"]
    assert not any((store / "staging" / "hp2").iterdir())

    forced = run_servegate(*args, "--force-new-version", home=home)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert (json_of(forced)["verdict"], json_of(forced)["version"]) == ("promoted", 2)
    assert rows(mlflow_db, "runs") > runs
