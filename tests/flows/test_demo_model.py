"""The demo's data and variants: real training on the bundled diabetes dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from servegate.demo import model as demo


def test_split_is_fixed_and_disjoint():
    data, again = demo.load_data(), demo.load_data()
    np.testing.assert_array_equal(data.x_reference, again.x_reference)
    assert data.x_train.shape == (352, 10) and data.x_reference.shape == (90, 10)
    train_rows = {r.tobytes() for r in data.x_train}
    assert not any(r.tobytes() in train_rows for r in data.x_reference)


def test_variants_rank_as_the_demo_needs(demo_files):
    def mae(variant):
        files = demo_files[variant]
        frame = pd.read_parquet(files.reference_path)
        assert list(frame.columns) == ["features", "label", "golden"]
        assert files.model_path.suffix == ".keras" and files.model_path.stat().st_size > 0
        return float(np.abs(frame["golden"] - frame["label"]).mean())

    baseline, improved, broken = mae("baseline"), mae("improved"), mae("broken")
    # improved is clearly better than baseline; broken is far worse than both
    assert improved < 0.95 * baseline
    assert broken > 2 * baseline


def test_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match="baseline, improved, broken"):
        demo.train("bigger")
