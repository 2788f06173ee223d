"""Where runners leave the records that let a later run reap what a killed run left."""

from __future__ import annotations

from pathlib import Path

from servegate.settings import servegate_home


def process_state_dir() -> Path:
    """Pid files of running process canaries: ``$SERVEGATE_HOME/run/canary-processes/<server pid>.json``."""
    return servegate_home() / "run" / "canary-processes"
