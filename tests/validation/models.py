"""Tiny real SavedModels for the validation tests, one per way a model can be wrong.

Every model is a ``tf.Module`` with a ``serving_default`` signature
``features`` (float32 [-1, 4]) -> ``prediction`` (float32 [-1, 1]) built on the
same linear weights, so that the reference labels and golden predictions of
:data:`GOOD` fit them all; each variant breaks one thing:

- ``good``: ``x @ W + b``;
- ``worse``: the same plus a constant shift (fails parity and regression);
- ``nan``: NaN for rows whose first feature is above 1 (fails sanity);
- ``renamed``: output called ``score`` instead of ``prediction`` (fails contract);
- ``slow``: good, but sleeps at least ``SLOW_SECONDS`` per request inside its
  graph (a ``SleepDataset`` op, so the sleep survives export; fails service level);
- ``classifier``: not a variant of the regressor but a 3-class softmax
  ``features`` -> ``probabilities`` [-1, 3], for the classification path;
- ``shifted``: the good regressor moved by ``FAR_SHIFT`` (about two standard
  deviations of its output): fails the distribution check against ``good``;
- ``sigmoid``: a binary classifier, one sigmoid output ``probability`` [-1, 1]
  on the same weights (labels: its own decision, 5% flipped);
- ``chance``: the same signature with unrelated weights: accuracy near 0.5;
- ``two_heads``: two outputs, ``prediction`` (the good regressor) and
  ``probability`` (its sigmoid), for per-output settings.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

N_FEATURES = 4
WEIGHTS = np.array([[0.5], [-1.0], [0.25], [2.0]], dtype="float32")
BIAS = np.array([0.1], dtype="float32")
SHIFT = 0.5
SLOW_SECONDS = 0.25
VARIANTS = ("good", "worse", "nan", "renamed", "slow", "classifier", "shifted", "sigmoid", "chance", "two_heads")
FAR_SHIFT = 5.0
CHANCE_WEIGHTS = np.array([[-0.3], [0.2], [1.5], [-0.1]], dtype="float32")
CLASS_WEIGHTS = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 0.5]], dtype="float32")


def build(variant: str):
    """A ``tf.Module`` of ``variant`` with its ``serve`` function (the serving signature)."""
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown test model variant {variant!r}; expected one of {VARIANTS}")

    class Linear(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(WEIGHTS)
            self.b = tf.Variable(BIAS)

        @tf.function(input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32, name="features")])
        def serve(self, features):
            if variant == "classifier":
                return {"probabilities": tf.nn.softmax(tf.matmul(features, tf.constant(CLASS_WEIGHTS)))}
            if variant in ("sigmoid", "chance"):
                w = self.w if variant == "sigmoid" else tf.constant(CHANCE_WEIGHTS)
                return {"probability": tf.sigmoid(tf.matmul(features, w) + self.b)}
            y = tf.matmul(features, self.w) + self.b
            if variant == "two_heads":
                return {"prediction": y, "probability": tf.sigmoid(y)}
            if variant == "worse":
                y = y + SHIFT
            if variant == "shifted":
                y = y + FAR_SHIFT
            if variant == "nan":
                y = tf.where(features[:, :1] > 1.0, tf.constant(np.nan, tf.float32), y)
            if variant == "slow":
                # A dataset that sleeps before yielding y: a sleep inside the graph itself.
                ds = tf.data.Dataset.from_tensors(y)
                variant_tensor = tf.raw_ops.SleepDataset(
                    input_dataset=ds._variant_tensor, sleep_microseconds=int(SLOW_SECONDS * 1e6),
                    output_types=[tf.float32], output_shapes=[tf.TensorShape([None, 1])])
                y = tf.raw_ops.DatasetToSingleElement(dataset=variant_tensor, output_types=[tf.float32],
                                                      output_shapes=[tf.TensorShape([None, 1])])[0]
            return {"score" if variant == "renamed" else "prediction": y}

    return Linear()


def export(variant: str, path: Path) -> Path:
    import tensorflow as tf

    module = build(variant)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


def reference_arrays(n_rows: int = 256, seed: int = 1) -> dict[str, np.ndarray]:
    """Inputs, labels (good model + small noise) and golden predictions (good model, in-process)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, N_FEATURES)).astype("float32")
    # The good model's own computation, run in-process (what export's golden predictions are).
    golden = (tf.matmul(tf.constant(x), tf.constant(WEIGHTS)) + tf.constant(BIAS)).numpy()
    label = golden[:, 0] + rng.normal(scale=0.05, size=n_rows).astype("float32")
    return {"features": x, "golden": golden[:, 0], "label": label}


def classifier_reference(n_rows: int = 256, seed: int = 2) -> dict[str, np.ndarray]:
    """Inputs, class labels (the classifier's own argmax, 10% of them changed) and golden probabilities."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, N_FEATURES)).astype("float32")
    golden = tf.nn.softmax(tf.matmul(tf.constant(x), tf.constant(CLASS_WEIGHTS))).numpy()
    label = golden.argmax(axis=1)
    flip = rng.random(n_rows) < 0.1
    label[flip] = (label[flip] + 1) % 3
    return {"features": x, "golden": golden, "label": label.astype("int64")}


SIGNATURE = {"inputs": {"features": {"dtype": "float32", "shape": [None, N_FEATURES]}},
             "outputs": {"prediction": {"dtype": "float32", "shape": [None, 1]}}}


def sigmoid_reference(n_rows: int = 256, seed: int = 3) -> dict[str, np.ndarray]:
    """Inputs, 0/1 labels (the sigmoid model's own decision, 5% flipped) and its golden probabilities."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, N_FEATURES)).astype("float32")
    golden = 1.0 / (1.0 + np.exp(-(x @ WEIGHTS + BIAS)))
    label = (golden[:, 0] >= 0.5).astype("int64")
    flip = rng.random(n_rows) < 0.05
    label[flip] = 1 - label[flip]
    return {"features": x, "golden": golden[:, 0].astype("float32"), "label": label}


SIGMOID_SIGNATURE = {"inputs": SIGNATURE["inputs"],
                     "outputs": {"probability": {"dtype": "float32", "shape": [None, 1]}}}
