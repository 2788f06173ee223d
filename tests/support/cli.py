"""The ``servegate`` command as a user meets it: a subprocess in a brand-new HOME.

Nothing of servegate's, Prefect's or MLflow's environment reaches the command but what a test gives:
no ``~/.servegate``, no ``~/.prefect``, no ``SERVEGATE_STORE`` of the developer's shell. PYTHONPATH is
kept, with this checkout first, so that a git worktree runs its own code.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SCRUBBED = ("SERVEGATE_", "PREFECT_", "MLFLOW_")


def checkout_pythonpath() -> str:
    """PYTHONPATH with this checkout first (a child process imports this worktree's servegate)."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(paths))


def fresh_env(home: Path, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """A user's shell on a fresh machine: HOME=home, the venv's bin first on PATH, this checkout on
    PYTHONPATH, no SERVEGATE_*/PREFECT_*/MLFLOW_* variable; then ``env`` (a None value removes one)."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    out.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=checkout_pythonpath(), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               TF_CPP_MIN_LOG_LEVEL="2")
    for key, value in (env or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@contextmanager
def _home(home: Path | None) -> Iterator[Path]:
    """``home``, or a brand-new temporary one removed afterwards."""
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        yield home
        return
    made = Path(tempfile.mkdtemp(prefix="servegate-home-"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def _argv(args: tuple[str, ...], script: bool) -> list[str]:
    # script: the console script pip installs (what a user types) rather than ``python -m servegate``
    return [str(VENV_BIN / "servegate"), *args] if script else [sys.executable, "-m", "servegate", *args]


def run_servegate(*args: str, home: Path | None = None, env: Mapping[str, str | None] | None = None,
                  cwd: Path | None = None, timeout: float = 300, script: bool = False,
                  ) -> subprocess.CompletedProcess:
    """``python -m servegate ARGS`` to its end, in ``home`` (default: a brand-new temporary HOME), from
    ``cwd`` (default: that HOME), with ``fresh_env``; stdout and stderr captured as text."""
    with _home(home) as home_dir:
        return subprocess.run(_argv(args, script), env=fresh_env(home_dir, env), cwd=cwd or home_dir,
                              capture_output=True, text=True, timeout=timeout)


def start_servegate(*args: str, home: Path, env: Mapping[str, str | None] | None = None,
                    cwd: Path | None = None, **popen) -> subprocess.Popen:
    """``python -m servegate ARGS`` started in ``home`` with ``fresh_env`` (``popen``: Popen's options)."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(_argv(args, False), env=fresh_env(home, env), cwd=cwd or home, **popen)


def json_of(result: subprocess.CompletedProcess) -> dict:
    """The one JSON object on stdout (json.loads refuses anything before or after it)."""
    assert result.stdout.strip(), f"nothing on stdout (exit {result.returncode}); stderr: {result.stderr[-2000:]}"
    return json.loads(result.stdout)


def rows(database: Path, table: str) -> int:
    """Rows in ``table`` of a SQLite database (0 when the file or the table is not there)."""
    if not database.is_file():
        return 0
    with closing(sqlite3.connect(database)) as db:
        if not db.execute("select 1 from sqlite_master where name = ?", (table,)).fetchone():
            return 0
        return db.execute(f"select count(*) from {table}").fetchone()[0]


def assert_nothing_opened(home: Path, store: Path | None = None) -> None:
    """No MLflow run, no Prefect flow run, no store version: the error came before any run."""
    assert rows(home / ".servegate" / "mlflow.db", "runs") == 0, "an MLflow run was opened"
    assert rows(home / ".prefect" / "prefect.db", "flow_run") == 0, "a Prefect flow run was created"
    store = store or home / ".servegate" / "store"
    versions = [p for p in store.glob("*/*/*") if p.name.isdigit()] if store.is_dir() else []
    assert versions == [], versions
