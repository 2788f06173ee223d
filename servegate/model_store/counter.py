"""The per-model version counter: the highest number ever handed out.

``<root>/.servegate/<model>/counter`` holds ``{"last_version": N}``, replaced
atomically (temp file, fsync, rename, fsync the directory) under the model
lock *before* the number is used anywhere. The next number is one above the
highest of: the counter, every version in any area (also temp directories,
which carry their number), and every version named in the history. So a
number is never handed out twice, also after versions are rejected, rolled
back, retired or deleted by hand, and even when the counter file itself is lost
while versions or history remain.
"""

from __future__ import annotations

import json
from pathlib import Path

from servegate.model_store import fsutil
from servegate.model_store.layout import ATOMIC_TMP_PREFIX


def read_counter(path: Path) -> int:
    """The last number handed out (0 when none, or when the file is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return 0
    except (OSError, ValueError):
        return 0  # written atomically, so this means tampering; the other sources still count
    value = data.get("last_version") if isinstance(data, dict) else data
    return value if isinstance(value, int) and value > 0 else 0


def write_counter(path: Path, last_version: int) -> None:
    fsutil.write_atomic(path, (json.dumps({"last_version": last_version}) + "\n").encode(),
                        tmp_prefix=ATOMIC_TMP_PREFIX)
