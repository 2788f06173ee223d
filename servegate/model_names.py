"""The one rule for a model name, shared by the store, the runners, the bundled server and ``servegate serve``.

A name is one path component (the store's ``<area>/<name>/``, TF Serving's
base path): ``[A-Za-z0-9][A-Za-z0-9_.-]*``, no ``..``, at most
:data:`MAX_MODEL_NAME_LENGTH` characters, so it can never leave a root. Each
caller raises its own error naming its own flag or field.
"""

from __future__ import annotations

import re

MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
MAX_MODEL_NAME_LENGTH = 128
MODEL_NAME_RULE = f"1 to {MAX_MODEL_NAME_LENGTH} characters matching {MODEL_NAME_PATTERN} without '..'"
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)


def is_model_name(name: object) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= MAX_MODEL_NAME_LENGTH
            and _MODEL_NAME_RE.fullmatch(name) is not None and ".." not in name)
