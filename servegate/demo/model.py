"""The demo's model and data: scikit-learn's bundled diabetes dataset, a small Keras MLP.

Nothing is downloaded: ``sklearn.datasets.load_diabetes`` reads a CSV shipped
inside the scikit-learn wheel. The 442 rows are split once, with a fixed seed,
into 352 training rows and 90 reference rows; the reference rows never train.

Three variants, so that the demo can show each path of the pipeline:

- ``baseline`` — 10 epochs: a fair first model (MAE about 53 on the reference rows);
- ``improved`` — 40 epochs: clearly better (MAE about 45);
- ``broken`` — the improved model with its output bias wiped to zero, as a
  botched weight surgery would leave it: it loads and answers, but its answers
  are about 150 too low, which the quality and regression checks must catch.

The model reads ``features`` (float32 [-1, 10]) and writes one output
(float32 [-1, 1]): disease progression one year after baseline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VARIANTS = ("baseline", "improved", "broken")
INPUT_NAME = "features"
LABEL_COLUMN = "label"
N_TRAIN = 352
_EPOCHS = {"baseline": 10, "improved": 40, "broken": 40}


@dataclass(frozen=True)
class DemoData:
    """Training and reference rows of the diabetes dataset (fixed split)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_reference: np.ndarray
    y_reference: np.ndarray
    feature_names: tuple[str, ...]


def load_data(seed: int = 0) -> DemoData:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x = data.data.astype("float32")
    y = data.target.astype("float32")
    order = np.random.default_rng(seed).permutation(len(x))
    train, ref = order[:N_TRAIN], order[N_TRAIN:]
    return DemoData(x[train], y[train], x[ref], y[ref], tuple(data.feature_names))


def train(variant: str, data: DemoData | None = None, seed: int = 0):
    """Train one demo variant; returns a Keras model (deterministic for a seed)."""
    if variant not in VARIANTS:
        raise ValueError(f"demo variant {variant!r} is unknown: expected one of {', '.join(VARIANTS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    data = data or load_data()
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(data.x_train.shape[1],), name=INPUT_NAME, dtype="float32")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    output = keras.layers.Dense(1, name="progression")(hidden)
    model = keras.Model(inputs, output, name=f"diabetes_{variant}")
    # Start the output at the training mean: the targets are ~150, far from 0,
    # and a few epochs should be enough to show a difference between variants.
    out = model.get_layer("progression")
    out.set_weights([out.get_weights()[0], np.array([data.y_train.mean()], "float32")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    model.fit(data.x_train, data.y_train, epochs=_EPOCHS[variant], batch_size=64, verbose=0)
    if variant == "broken":
        kernel, bias = out.get_weights()
        out.set_weights([kernel, np.zeros_like(bias)])
    return model


def save(model, path: Path | str) -> Path:
    """Save as a ``.keras`` file (what a training job hands to ``servegate deploy``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def reference_frame(data: DemoData | None = None):
    """The reference rows as a DataFrame: ``features`` (list column) and ``label``."""
    import pandas as pd

    data = data or load_data()
    return pd.DataFrame(
        {INPUT_NAME: [row.tolist() for row in data.x_reference], LABEL_COLUMN: data.y_reference.astype("float64")}
    )


@dataclass(frozen=True)
class DemoModelFiles:
    """What a training job hands over: the model file and its reference data."""

    variant: str
    model_path: Path
    reference_path: Path


def write_variant(variant: str, out_dir: Path | str, data: DemoData | None = None, seed: int = 0) -> DemoModelFiles:
    """Train ``variant`` and write ``<variant>.keras`` and ``<variant>-reference.parquet``.

    The reference holds the reference rows' inputs (``features``), labels
    (``label``) and this model's own in-process predictions (``golden``), as a
    training job would hand them to ``servegate deploy``.
    """
    out_dir = Path(out_dir)
    data = data or load_data()
    model = train(variant, data, seed)
    model_path = save(model, out_dir / f"{variant}.keras")
    frame = reference_frame(data)
    # A direct call, not predict(): predict() retraces its tf.function per model and warns.
    frame["golden"] = np.asarray(model(data.x_reference, training=False))[:, 0].astype("float64")
    reference_path = out_dir / f"{variant}-reference.parquet"
    frame.to_parquet(reference_path, index=False)
    return DemoModelFiles(variant, model_path, reference_path)
