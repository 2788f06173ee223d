"""servegate: get a trained TensorFlow model into TensorFlow Serving safely.

The pipeline (see docs/DESIGN.md): export -> stage -> canary -> validate ->
promote (or reject) -> verify production.
"""

__version__ = "0.1.0"
