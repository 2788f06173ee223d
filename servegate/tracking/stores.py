"""Opening MLflow's tracking and registry stores, and the errors they raise.

One tracking URI names both stores (the registry lives in the same database).
A SQLite URI keeps its artifacts in ``artifacts/`` beside the database file;
an ``http(s)://`` URI is checked once, up front, because MLflow's own client
retries a dead server for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from servegate.errors import TrackingError

_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")
_MIGRATION_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")


def metric_key(name: str) -> str:
    """A metric name MLflow accepts (alphanumerics, ``_-. /``); others become ``_``."""
    return _METRIC_KEY_BAD.sub("_", name)[:250]


def sqlite_dir(uri: str) -> Path | None:
    """The folder of a ``sqlite:`` URI's database file; None for other URIs."""
    if not uri.startswith("sqlite:"):
        return None
    path = urlparse(uri).path
    # sqlite:////abs/path -> path "//abs/path"; sqlite:///rel -> "/rel"
    if uri.startswith("sqlite:////"):
        return Path(path[1:]).parent
    return Path(path.lstrip("/")).resolve().parent


def check_tracking_server(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """For an ``http(s)://`` tracking URI, check that the MLflow server answers ``/health``.

    Other URIs (a SQLite file, a local folder) need no server: nothing to check.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import httpx

    try:
        response = httpx.get(tracking_uri.rstrip("/") + "/health", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise TrackingError(
            f"MLflow tracking server not reachable at MLFLOW_TRACKING_URI={tracking_uri} "
            f"({type(exc).__name__}: {exc}). Start it with `mlflow server`, or unset MLFLOW_TRACKING_URI "
            "to track in a local SQLite file", subject=tracking_uri,
        ) from exc


def open_client(tracking_uri: str):
    """An :class:`mlflow.MlflowClient` on ``tracking_uri`` (tracking and registry); TrackingError when it fails."""
    db_dir = sqlite_dir(tracking_uri)
    if db_dir is not None:
        try:
            db_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(
                f"MLflow tracking store {tracking_uri}: cannot create its folder {db_dir}: {exc}",
                subject=str(db_dir),
            ) from exc
    try:
        from mlflow import MlflowClient

        if db_dir is None:
            return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        return _open_sqlite_stores(MlflowClient, tracking_uri, db_dir)
    except Exception as exc:
        raise TrackingError(f"MLflow tracking store {tracking_uri} cannot be opened: {exc}",
                            subject=tracking_uri) from exc


def _open_sqlite_stores(client_class, tracking_uri: str, db_dir: Path):
    """Open the tracking and registry stores one process at a time.

    Opening a SQLite store creates or migrates its tables; MLflow does not
    guard that against other processes, and deploys started at once on a
    fresh database failed in the migration ("No such constraint:
    'uq_registered_models_name'"). A file lock beside the database makes the
    first opener create the tables and the others find them.
    """
    import filelock

    with filelock.FileLock(str(db_dir / ".mlflow-open.lock"), timeout=300), _quiet_migrations():
        client = client_class(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


@contextlib.contextmanager
def _quiet_migrations():
    """MLflow announces creating and migrating its tables at INFO ("Creating initial MLflow database
    tables..."): routine on a first run, not something a user acts on. Warnings still show."""
    loggers = [logging.getLogger(name) for name in _MIGRATION_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def call(tracking_uri: str, what: str, fn: Callable[..., Any], *args, **kwargs):
    """``fn(*args, **kwargs)``, with any failure raised as a TrackingError naming ``what`` and the URI."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise TrackingError(f"MLflow {what} at {tracking_uri}: {exc}") from exc
