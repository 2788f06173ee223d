"""Validation fixtures: the test models exported once, a reference file, and one shared canary.

The canary is one bundled server (process runner) serving every variant of
``tests/validation/models.py`` as its own version, with the labels
``stable`` -> good and ``canary`` -> worse, so that every test of the module
can address the model it needs without booting a server of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.canary import running_canary
from tests.validation import models

VERSION = {name: i + 1 for i, name in enumerate(models.VARIANTS)}  # good=1, worse=2, nan=3, ... (VARIANTS order)
MODEL_NAME = "lin"


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("validation_models")
    return {name: models.export(name, root / name) for name in models.VARIANTS}


@pytest.fixture(scope="session")
def reference_arrays() -> dict[str, np.ndarray]:
    return models.reference_arrays()


@pytest.fixture(scope="session")
def reference_parquet(tmp_path_factory, reference_arrays) -> Path:
    """Inputs as a list column, labels, golden predictions: 256 rows."""
    path = tmp_path_factory.mktemp("reference") / "reference.parquet"
    a = reference_arrays
    pd.DataFrame({"features": list(a["features"]), "label": a["label"], "golden": a["golden"]}).to_parquet(path)
    return path


@pytest.fixture(scope="session")
def canary(model_dirs, tmp_path_factory):
    """(runner, seconds to AVAILABLE) of the shared canary; stopped at the end of the session."""
    from servegate.serving.runners import CanarySpec

    spec = CanarySpec(MODEL_NAME, {VERSION[name]: path for name, path in model_dirs.items()},
                      labels={"stable": VERSION["good"], "canary": VERSION["worse"]})
    with running_canary(spec, tmp_path_factory.mktemp("servegate_home")) as started:
        yield started


@pytest.fixture(scope="session")
def sigmoid_path(tmp_path_factory):
    """A reference for the sigmoid classifier (features, label, golden answers)."""
    a = models.sigmoid_reference()
    path = tmp_path_factory.mktemp("sigmoid") / "sigmoid.parquet"
    pd.DataFrame({"features": list(a["features"]), "label": a["label"], "golden": a["golden"]}).to_parquet(path)
    return path
