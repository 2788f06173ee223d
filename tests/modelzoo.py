"""Tiny real TensorFlow models for tests and benchmarks.

Every model here is a real Keras model exported as a real SavedModel with a
``serving_default`` signature; they are tiny so that a session can build them
in a second or two. Build each once per session (see ``conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

N_FEATURES = 4


def regressor(n_features: int = N_FEATURES, hidden: int = 8, seed: int = 0, bias_shift: float = 0.0):
    """A small dense regressor: ``features`` (float32 [-1, n]) -> ``prediction`` ([-1, 1])."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(n_features,), name="features", dtype="float32")
    x = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    out = keras.layers.Dense(1, name="prediction")(x)
    model = keras.Model(inputs, out)
    if bias_shift:
        layer = model.get_layer("prediction")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, bias + bias_shift])
    return model


def export(model, path: Path) -> Path:
    """Export a Keras model as a SavedModel (``serving_default``) at ``path``."""
    path = Path(path)
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def reference_inputs(n_rows: int = 64, n_features: int = N_FEATURES, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_rows, n_features)).astype("float32")


# The source of a module that registers a custom Keras layer under ``package`` (fill with
# ``.format(package=...)``): models saved with it load only where the module is imported.
CUSTOM_LAYER_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="{package}")
class ScaleLayer(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {{**super().get_config(), "factor": self.factor}}
'''


def sigmoid_module(path: Path, weights: np.ndarray, *, flip_above: float | None = None,
                   input_name: str = "features") -> Path:
    """A tf.Module SavedModel: ``probability = sigmoid(features @ weights)``, [None, 4] -> [None, 1].

    ``flip_above``: answer ``1 - p`` where the first feature is above it, a region of the input space that
    reference rows near 0 never reach (the shadow check's proof pair)."""
    import tensorflow as tf

    class Sigmoid(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name=input_name)])
        def serve(self, features):
            p = tf.sigmoid(tf.matmul(features, tf.constant(weights)))
            if flip_above is not None:
                p = tf.where(features[:, :1] > flip_above, 1.0 - p, p)
            return {"probability": p}

    module = Sigmoid()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def examples_module(path: Path, slope: float, intercept: float, *, classify: bool = True) -> Path:
    """``y = slope * x + intercept`` as TF Serving's half_plus_two is built (TF1 SavedModel builder):
    ``serving_default`` (predict, ``x`` [None, 1] -> ``y``), ``regress_x_to_y`` (regress: serialized
    ``tf.Example``s with a float feature ``x`` -> ``outputs``) and, with ``classify``, ``classify_x_to_y``
    (classify: the same examples -> one ``scores`` column). TF2's ``tf.saved_model.save`` writes only predict
    signatures, so the classify/regress methods need this builder."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})
        x = v1.placeholder_with_default(parsed["x"], [None, 1], name="x")
        y = tf.add(tf.multiply(x, slope), intercept, name="y")
        signatures = {
            "serving_default": v1.saved_model.predict_signature_def({"x": x}, {"y": y}),
            "regress_x_to_y": v1.saved_model.regression_signature_def(serialized, y),
        }
        if classify:
            signatures["classify_x_to_y"] = v1.saved_model.classification_signature_def(serialized, None, y)
        with v1.Session() as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, [v1.saved_model.SERVING], signature_def_map=signatures)
            builder.save()
    return path
