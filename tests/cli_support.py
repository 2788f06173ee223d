"""What the CLI contract tests share: a brand-new HOME, the CLI run in it (tests/support/cli.py), and the
inputs (a .keras file, reference files good and bad). half_plus_two is tests/conftest.py's ``hp2``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.cli import assert_nothing_opened, json_of, rows, run_servegate  # noqa: F401 (re-exported)


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def run_cli(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m servegate ARGS`` in ``home`` (a brand-new HOME; nothing of servegate's, MLflow's or Prefect's set)."""
    return run_servegate(*args, home=home, env=env, cwd=home, timeout=300)


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
