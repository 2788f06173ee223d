"""A quiet, honest terminal for the long commands (``deploy``, ``demo``).

TensorFlow's C++ runtime, absl, CUDA probes, MLflow's database migrations and
Prefect's engine all write to file descriptors 1 and 2, some before any
Python logging setting can reach them. So the command moves both descriptors
to a log file (whose path it prints) and keeps private copies of the real
terminal for what the user should read: servegate's progress lines (the
``servegate.deploy`` logger) on stderr, and the verdict or the ``--json``
object on stdout. ``--verbose`` leaves everything on the terminal.

Only the ``servegate`` process itself redirects; a test or program calling
:func:`servegate.cli.main` in-process keeps its own streams.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from servegate.settings import servegate_home

PROGRESS_LOGGER = "servegate.deploy"


@dataclass
class Terminal:
    out: TextIO  # the verdict, the --json object
    err: TextIO  # progress lines and the error line
    log_path: Path | None = None  # where library output went (None: nowhere else)

    def echo(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


def _log_path(command: str, name: str) -> Path:
    logs = servegate_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "model"  # the name is checked later, by the deploy
    return logs / f"{command}-{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _redirect_to(log_path: Path) -> Terminal:
    sys.stdout.flush()
    sys.stderr.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)  # os.dup: not inherited by child processes
    err = os.fdopen(os.dup(2), "w", buffering=1)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return Terminal(out, err, log_path)


def open_terminal(command: str, name: str, verbose: bool, own_process: bool) -> Terminal:
    """The streams the user reads; everything else goes to a log file unless ``verbose``."""
    if verbose or not own_process:
        terminal = Terminal(sys.stdout, sys.stderr)
    else:
        terminal = _redirect_to(_log_path(command, name))
    handler = logging.StreamHandler(terminal.err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.servegate_terminal = True
    progress = logging.getLogger(PROGRESS_LOGGER)
    for old in [h for h in progress.handlers if getattr(h, "servegate_terminal", False)]:
        progress.removeHandler(old)  # an earlier command in this process
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = verbose  # the log file gets Prefect's copy of each line already
    return terminal
