"""Work dirs of deploy attempts, named after their process so that a later attempt can remove a killed one's.

``$TMPDIR/servegate-deploy-<pid>-<start ticks>-<random>``. The attempt removes
its own at the end; a SIGKILLed attempt cannot, so every new one first removes
the work dirs whose process (pid and start time, see
:mod:`servegate.runtime.identity`) is gone.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from servegate.runtime.identity import ProcessIdentity

WORK_DIR_PREFIX = "servegate-deploy-"


def owner_of(work_dir: Path) -> ProcessIdentity | None:
    """The process a work dir's name names (always this host's: ``$TMPDIR`` is local); None for other names."""
    name = Path(work_dir).name
    if not name.startswith(WORK_DIR_PREFIX):
        return None
    parts = name[len(WORK_DIR_PREFIX):].split("-")
    if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return ProcessIdentity.of_local(int(parts[0]), int(parts[1]))


def remove_dead_work_dirs(base: Path | None = None) -> list[Path]:
    """Remove the work dirs (in ``base``, default ``$TMPDIR``) of attempts whose process is gone."""
    base = Path(base) if base is not None else Path(tempfile.gettempdir())
    me = ProcessIdentity.current()
    removed = []
    for entry in sorted(base.glob(WORK_DIR_PREFIX + "*")):
        owner = owner_of(entry)
        if owner is not None and owner.pid != me.pid and owner.is_dead():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def new_work_dir() -> Path:
    """A fresh work dir for one attempt, after removing dead attempts' (see the module docstring)."""
    remove_dead_work_dirs()
    me = ProcessIdentity.current()
    return Path(tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{me.pid}-{me.start_ticks}-"))
