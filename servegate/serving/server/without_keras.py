"""Keep Keras out of the bundled server's process.

``import tensorflow`` eagerly imports Keras ("so that optimizers register
with the SavedModel registry"), and Keras imports pandas and scikit-learn:
about 1.8 CPU-seconds and 170 MiB per server on the 2-core machine
(docs/performance.md), spent by every canary while the deploy's own export
competes for the CPU. Serving needs none of it: the bundled server stands in
for ``tensorflow_model_server``, which has no Keras, and it loads SavedModels
with ``tf.saved_model.load``, which revives no Keras objects. A model that
loads only with Keras present would not load in TensorFlow Serving either.

TensorFlow catches the ImportError and leaves ``tf.keras`` a lazy loader that
fails only if used. ``SERVEGATE_SERVING_KERAS=1`` lets Keras in again (an
escape hatch; nothing here needs it).
"""

from __future__ import annotations

import os
import sys

ALLOW_ENV = "SERVEGATE_SERVING_KERAS"


def keep_keras_out() -> bool:
    """Make ``import keras`` fail in this process unless allowed; returns whether it was kept out.

    Call before anything imports TensorFlow: a ``None`` in ``sys.modules`` makes the import raise
    ImportError (Python's documented way to block a module)."""
    if os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False
    if "tensorflow" in sys.modules or "keras" in sys.modules:
        return False  # too late, or someone in this process wants it
    sys.modules["keras"] = None  # type: ignore[assignment]
    return True
