"""The export just written, as :func:`servegate.export.export_model` loaded it to read its signature.

``golden_predictions`` of that directory runs it instead of loading the
SavedModel a second time (for a ~100 MB model, seconds on the deploy's
critical path). One entry per process, dropped when taken; keyed by the
directory and its ``saved_model.pb`` (inode, size, modification time), so a
directory written again since is loaded again. The answers still come from the
exported SavedModel's ``serving_default``, as with a fresh load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_kept: tuple[tuple, Any] | None = None


def _key(savedmodel_dir: Path) -> tuple | None:
    try:
        stat = (savedmodel_dir / "saved_model.pb").stat()
    except OSError:
        return None
    return (str(savedmodel_dir.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)


def keep(savedmodel_dir: Path, loaded: Any) -> None:
    """Keep ``loaded``, the SavedModel at ``savedmodel_dir`` (replacing any kept before)."""
    global _kept
    key = _key(savedmodel_dir)
    _kept = None if key is None else (key, loaded)


def take(savedmodel_dir: Path) -> Any | None:
    """The kept SavedModel when it is ``savedmodel_dir``'s as it is now, else None; nothing is kept after."""
    global _kept
    kept, _kept = _kept, None
    if kept is not None and kept[0] == _key(savedmodel_dir):
        return kept[1]
    return None
