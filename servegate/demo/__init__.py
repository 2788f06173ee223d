"""The demo: a small Keras model on a dataset shipped inside scikit-learn, and
the end-to-end script behind ``servegate demo`` (see :mod:`servegate.demo.run`)."""
