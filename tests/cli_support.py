"""What the CLI contract tests share: the CLI as a subprocess in a brand-new HOME, its one JSON
object, "nothing was opened", and the inputs (a SavedModel, a .keras file, reference files)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def run_cli(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m servegate ARGS`` with HOME=home and nothing of servegate's, MLflow's or Prefect's set."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("SERVEGATE_", "MLFLOW_", "PREFECT_API"))}
    full.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PYTHONPATH=str(REPO_ROOT),
                **(env or {}))
    return subprocess.run([sys.executable, "-m", "servegate", *args], capture_output=True, text=True,
                          env=full, cwd=home, timeout=300)


def json_of(result: subprocess.CompletedProcess) -> dict:
    """The one JSON object on stdout (json.loads refuses anything before or after it)."""
    assert result.stdout.strip(), f"nothing on stdout (exit {result.returncode}); stderr: {result.stderr[-2000:]}"
    return json.loads(result.stdout)


def rows(database: Path, table: str) -> int:
    """Rows in ``table`` of a SQLite database (0 when the file or the table is not there)."""
    if not database.is_file():
        return 0
    with closing(sqlite3.connect(database)) as db:
        if not db.execute("select 1 from sqlite_master where name = ?", (table,)).fetchone():
            return 0
        return db.execute(f"select count(*) from {table}").fetchone()[0]


def assert_nothing_opened(home: Path, store: Path | None = None) -> None:
    """No MLflow run, no Prefect flow run, no store version: the error came before any run."""
    assert rows(home / ".servegate" / "mlflow.db", "runs") == 0, "an MLflow run was opened"
    assert rows(home / ".prefect" / "prefect.db", "flow_run") == 0, "a Prefect flow run was created"
    store = store or home / ".servegate" / "store"
    versions = [p for p in store.glob("*/*/*") if p.name.isdigit()] if store.is_dir() else []
    assert versions == [], versions


@pytest.fixture(scope="module")
def hp2(tmp_path_factory, tfs_testdata) -> Path:
    """TF Serving's half_plus_two SavedModel: input ``x`` float32 [-1, 1], output ``y``."""
    path = tmp_path_factory.mktemp("hp2") / "hp2"
    shutil.copytree(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", path)
    return path


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    """A real tiny Keras 3 regressor as a .keras file: input ``features`` float32 [-1, 4]."""
    from tests import modelzoo

    path = tmp_path_factory.mktemp("keras") / "model.keras"
    modelzoo.regressor().save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Reference files, good and bad, for both models."""
    out = tmp_path_factory.mktemp("refs")
    x = np.linspace(0, 1, 16, dtype="float32")
    paths = {name: out / f"{name}" for name in (
        "hp2.parquet", "hp2-typo.parquet", "hp2-nan.csv", "empty.csv", "header-only.csv", "zero-rows.parquet",
        "features.parquet", "features-typo.parquet", "features-nan.parquet", "bad.yaml", "unknown.yaml",
        "broken.yaml", "empty.keras", "text.keras", "notes.txt")}
    pd.DataFrame({"x": x, "label": 0.5 * x + 2}).to_parquet(paths["hp2.parquet"])
    pd.DataFrame({"xx": x}).to_parquet(paths["hp2-typo.parquet"])
    pd.DataFrame({"x": np.where(np.arange(16) == 5, np.nan, x)}).to_csv(paths["hp2-nan.csv"], index=False)
    paths["empty.csv"].write_bytes(b"")
    paths["header-only.csv"].write_text("x,label\n")
    pd.DataFrame({"x": np.array([], dtype="float32")}).to_parquet(paths["zero-rows.parquet"])
    rows = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    pd.DataFrame({"features": list(rows)}).to_parquet(paths["features.parquet"])
    pd.DataFrame({"featurs": list(rows)}).to_parquet(paths["features-typo.parquet"])
    rows[3, 1] = np.nan
    pd.DataFrame({"features": list(rows)}).to_parquet(paths["features-nan.parquet"])
    paths["bad.yaml"].write_text("parity:\n  atol: -1\n")
    paths["unknown.yaml"].write_text("quality:\n  max_maee: 1\n")
    paths["broken.yaml"].write_text("parity: [\n")
    paths["empty.keras"].write_bytes(b"")
    paths["text.keras"].write_text("not a model")
    paths["notes.txt"].write_text("notes")
    return paths


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
