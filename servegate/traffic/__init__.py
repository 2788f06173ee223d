"""Recorded production traffic: request logs in TensorFlow Serving's PredictionLog format, the recording
proxy (``servegate tap``), and reading logs back for the shadow check."""
