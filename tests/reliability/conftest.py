"""Fixtures for the reliability tests: one trained model (and a broken twin) with one reference file,
one Prefect API, the local serving image, and isolated workspaces, each built once.

The tests marked ``reliability`` (one kill at every step boundary with both
runners, the full kill sweep, the concurrency test, the hanging/crashing
canary and full-disk faults) only run when asked for (``pytest -m reliability
tests/reliability``, CI's second step): together they take about 15 minutes on
a 2-core machine. The default run keeps the bad-input catalogue and availability;
the repairs of killed attempts are tested directly in tests/deploy/test_repair.py,
the store's own crash tests (60+ SIGKILLs) in tests/model_store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.harness import Workspace


@dataclass(frozen=True)
class ModelFiles:
    """What a training job hands to ``servegate deploy``."""

    good: Path            # a small Keras regressor (.keras)
    other: Path           # a second, different good model (for "different models")
    broken: Path          # the good model with its output shifted by +3: rejected by quality
    savedmodel: Path      # the good model as a SavedModel directory
    reference: Path       # Parquet: features (list column), label (the good model's answers + noise)
    config: Path          # validation config: quality.max_mae 0.5, a short canary deadline


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> ModelFiles:
    import numpy as np
    import pandas as pd

    from tests import modelzoo

    out = tmp_path_factory.mktemp("reliability-models")
    good = modelzoo.regressor(seed=0)
    good.save(out / "good.keras")
    modelzoo.regressor(seed=7).save(out / "other.keras")
    modelzoo.regressor(seed=0, bias_shift=3.0).save(out / "broken.keras")
    modelzoo.export(good, out / "good-savedmodel")
    x = modelzoo.reference_inputs(64)
    y = np.asarray(good(x, training=False))[:, 0].astype("float64")
    y += np.random.default_rng(2).normal(scale=0.05, size=y.shape)
    pd.DataFrame({"features": [row.tolist() for row in x], "label": y}).to_parquet(out / "ref.parquet", index=False)
    config = out / "validation.yaml"
    config.write_text("quality:\n  max_mae: 0.5\nload:\n  deadline_s: 90\n")
    return ModelFiles(out / "good.keras", out / "other.keras", out / "broken.keras", out / "good-savedmodel",
                      out / "ref.parquet", config)


@pytest.fixture(scope="session")
def prefect_api_url():
    """A temporary Prefect server and database for the whole session; its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def local_image(docker_client) -> str:
    from servegate.serving.runners.image import ensure_local_image

    return ensure_local_image()


@pytest.fixture
def workspace(tmp_path, prefect_api_url):
    """An isolated servegate installation; everything it started is stopped at teardown."""
    ws = Workspace(tmp_path / "ws", prefect_api_url)
    yield ws
    ws.close()
