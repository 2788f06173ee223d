"""Prewarming: a spare bundled server, started early so that a process canary skips the server's TensorFlow import.

A deploy knows at its start that it will boot a process canary, seconds
before the candidate is staged. :func:`prewarm` starts
``python -m servegate.serving.server.spare`` (see that module for the
protocol) as this process's one *spare*; the :class:`ProcessRunner`'s first
launch :func:`take`\\ s it, when it would start the bundled server with this
process's environment anyway, and hands it its flags on stdin. The server
then runs exactly as a cold ``python -m servegate.serving`` would, only with
its imports done.

Life cycle and guarantees:

- at most one spare per process (a lock guards it); ``prewarm`` is a no-op
  when one exists, ``take`` hands it out at most once;
- the spare's command line names its canary work dir
  (``$TMPDIR/servegate-canary-<model>-*``), which the runner adopts;
- :func:`discard` (called when the deploy ends, and at interpreter exit)
  closes the spare's stdin and ends it; a SIGKILLed owner closes the pipe
  too, and the spare then exits at once and removes its work dir, so an
  unused spare never outlives its owner;
- a spare that died (e.g. a failed import) is never used: the runner starts
  the server cold and its log shows why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

WARM_MODULE = "servegate.serving.server.spare"


@dataclass
class Spare:
    """A started warm server waiting for its flags, and the canary work dir it owns."""

    process: subprocess.Popen
    workdir: Path
    model_name: str

    def alive(self) -> bool:
        return self.process.poll() is None


_lock = threading.Lock()
_spare: Spare | None = None
_atexit_registered = False


def bundled_command() -> list[str]:
    return [sys.executable, "-m", "servegate.serving"]


def prewarm(model_name: str) -> bool:
    """Start the spare for a canary of ``model_name`` unless one exists; True when one exists now.

    Only the bundled server is prewarmed: with ``tensorflow_model_server`` on PATH the
    runner would not use the bundled one.
    """
    global _spare, _atexit_registered
    from servegate.serving import TFS_BINARY

    if shutil.which(TFS_BINARY):
        return False
    with _lock:
        if _spare is not None and _spare.alive():
            return True
        workdir = Path(tempfile.mkdtemp(prefix=f"servegate-canary-{model_name}-"))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            [sys.executable, "-m", WARM_MODULE, "--workdir", str(workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            cwd=workdir, start_new_session=True,
        )
        _spare = Spare(process, workdir, model_name)
        if not _atexit_registered:
            atexit.register(discard)
            _atexit_registered = True
        return True


def take(model_name: str) -> Spare | None:
    """The live spare for ``model_name``, handed out once; None when there is none."""
    global _spare
    with _lock:
        spare = _spare
        if spare is None or spare.model_name != model_name:
            return None
        _spare = None
    if not spare.alive():
        _end(spare)
        return None
    return spare


def discard() -> None:
    """End the unused spare, if any (safe to call any number of times)."""
    global _spare
    with _lock:
        spare, _spare = _spare, None
    if spare is not None:
        _end(spare)


def _end(spare: Spare) -> None:
    try:
        if spare.process.stdin is not None:
            spare.process.stdin.close()  # end of file: the spare exits by itself
    except OSError:
        pass
    try:
        spare.process.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        spare.process.kill()  # still importing: its request thread may not run yet
        spare.process.wait()
    shutil.rmtree(spare.workdir, ignore_errors=True)
