"""Where servegate keeps things by default, and the environment that overrides it.

- ``SERVEGATE_HOME``: servegate's own folder (default ``~/.servegate``).
- ``SERVEGATE_STORE``: the model store root (default ``$SERVEGATE_HOME/store``).
- ``MLFLOW_TRACKING_URI``: the tracking store (default a SQLite file in ``$SERVEGATE_HOME``).
- ``SERVEGATE_EXPORTS``: the folder the scheduled ``deploy-newest-export``
  deployment watches and the demo's training deployment writes to (default
  ``$SERVEGATE_HOME/exports``).

A command-line flag beats the environment, which beats the default.
"""

from __future__ import annotations

import os
from pathlib import Path


def servegate_home() -> Path:
    return Path(os.environ.get("SERVEGATE_HOME") or Path.home() / ".servegate").expanduser()


def default_store_root() -> Path:
    env = os.environ.get("SERVEGATE_STORE")
    return Path(env).expanduser() if env else servegate_home() / "store"


def default_tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{servegate_home() / 'mlflow.db'}"


def default_exports_dir() -> Path:
    env = os.environ.get("SERVEGATE_EXPORTS")
    return Path(env).expanduser() if env else servegate_home() / "exports"
