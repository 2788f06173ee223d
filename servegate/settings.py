"""Where servegate keeps things by default, and the environment that overrides it.

- ``SERVEGATE_HOME``: servegate's own folder (default ``~/.servegate``).
- ``SERVEGATE_STORE``: the model store root (default ``$SERVEGATE_HOME/store``).
- ``MLFLOW_TRACKING_URI``: the tracking store (default a SQLite file in ``$SERVEGATE_HOME``).
- ``SERVEGATE_EXPORTS``: the folder the scheduled ``deploy-newest-export``
  deployment watches and the demo's training deployment writes to (default
  ``$SERVEGATE_HOME/exports``).

A command-line flag beats the environment, which beats the default. Every
command takes its store through :func:`resolve_store_root`: one order, one
check (a URI or object-store mount is refused before anything is written,
naming where the location came from), and one form (an absolute path, a
relative one taken against the current directory; ``s3://BUCKET/PREFIX`` as an
:class:`~servegate.object_store.S3Location` for the commands that take one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servegate.object_store.location import S3Location


def resolve_location(source: str, location: str | os.PathLike[str]) -> Path:
    """``location`` (named by ``source``: a flag or a variable) as an absolute path; raises
    :class:`~servegate.model_store.filesystems.UnsafeStoreLocation` for a URI or an object-store mount."""
    from servegate.model_store.filesystems import MOUNTINFO, check_location, read_mounts

    check_location(source, location, read_mounts(MOUNTINFO))
    return Path(os.path.abspath(os.path.expanduser(os.fspath(location))))


def servegate_home() -> Path:
    env = os.environ.get("SERVEGATE_HOME")
    return resolve_location("SERVEGATE_HOME", env) if env else Path.home() / ".servegate"


def resolve_store_root(flag: str | os.PathLike[str] | None = None, flag_name: str = "--store", *,
                       object_store: bool = False) -> Path | S3Location:
    """The store root: ``flag`` (a command's ``--store``, a flow's ``store``), else ``$SERVEGATE_STORE``,
    else ``$SERVEGATE_HOME/store``, else ``~/.servegate/store``; absolute, and refused with
    ``UnsafeStoreLocation`` (exit 2) naming ``flag_name`` or the variable when it cannot hold a
    crash-safe store. ``s3://BUCKET/PREFIX`` is an :class:`S3Location` where the caller takes one
    (``object_store=True``), else refused by name (no network here: see
    :meth:`servegate.object_store.ObjectModelStore.open`)."""
    if flag is not None and not isinstance(flag, (str, os.PathLike)):
        flag = str(flag)  # an S3Location resolved earlier: its URI
    if flag is not None and os.fspath(flag) != "":
        source, location = flag_name, flag
    elif os.environ.get("SERVEGATE_STORE"):
        source, location = "SERVEGATE_STORE", os.environ["SERVEGATE_STORE"]
    else:
        return servegate_home() / "store"
    from servegate.object_store.location import OBJECT_STORE_COMMANDS, as_s3_uri, parse_s3_uri

    uri = as_s3_uri(location)
    if uri is not None and object_store:
        return parse_s3_uri(uri, source)
    if uri is not None:
        from servegate.object_store.errors import BadStoreURI

        raise BadStoreURI(f"{source} {uri!r} is an object store (s3://): this command works on a directory "
                          "(object stores have no atomic rename). s3:// store roots work with "
                          f"{OBJECT_STORE_COMMANDS}; see docs/scaling.md", subject=uri)
    return resolve_location(source, location)


def default_store_root() -> Path:
    """The store root when no flag names one (see :func:`resolve_store_root`)."""
    return resolve_store_root(None)


def default_tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{servegate_home() / 'mlflow.db'}"


def default_exports_dir() -> Path:
    env = os.environ.get("SERVEGATE_EXPORTS")
    return Path(env).expanduser() if env else servegate_home() / "exports"
