"""``servegate sync``: the sidecar beside each TF Serving replica (see servegate/object_store/sync.py)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from servegate.cli.app import app


@app.command("sync")
def sync_command(
    names: Annotated[list[str], typer.Option("--name", help="A model to keep in step (repeat, one per "
                                                            "--base-path).")],
    base_paths: Annotated[list[Path], typer.Option("--base-path", help="The local directory TF Serving polls "
                                                                       "for that model (repeat).")],
    serving_url: Annotated[Optional[str], typer.Option(
        "--serving-url", help="This node's TF Serving REST URL: old versions stay until the new one is "
                              "AVAILABLE there.")] = None,
    node: Annotated[Optional[str], typer.Option("--node-id", help="This node's id in the heartbeats "
                                                                  "(default: the host name).")] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between passes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (1 when a model failed).")] = False,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Serve Prometheus metrics "
                                                                               "on this port.")] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address the metrics bind to.")
                            ] = "127.0.0.1",
    store: Annotated[Optional[str], typer.Option(
        "--store", help="The store root: s3://BUCKET/PREFIX (default: $SERVEGATE_STORE).")] = None,
) -> int:
    """Keep local base paths in step with production in an s3:// store (download, verify, rename)."""
    from servegate.errors import ConfigError
    from servegate.model_store.layout import check_model_name
    from servegate.object_store.sync import SyncTarget
    from servegate.object_store.sync_loop import SyncOptions, run_sync
    from servegate.settings import resolve_location, resolve_store_root

    if len(names) != len(base_paths):
        raise ConfigError(f"--name given {len(names)} times and --base-path {len(base_paths)} times; expected "
                          "one --base-path per --name", subject="--base-path")
    targets = [SyncTarget(check_model_name(name), resolve_location("--base-path", path))
               for name, path in zip(names, base_paths)]
    location = resolve_store_root(store, object_store=True)
    if isinstance(location, Path):
        where = "--store" if store else "SERVEGATE_STORE" if os.environ.get("SERVEGATE_STORE") else "the default store"
        raise ConfigError(f"{where} {location}: a directory store; servegate sync copies from an s3:// store "
                          "(expected s3://BUCKET/PREFIX). A directory store is served where it lies: servegate serve "
                          f"--store {location}, or TF Serving on {location}/production/<name>", subject=str(location))
    options = SyncOptions(location, targets, node or socket.gethostname(), serving_url,
                          interval, once, metrics_port, metrics_host)
    code = run_sync(options, say=lambda line: print(line, file=sys.stderr, flush=True))
    if code:
        raise typer.Exit(code)
    return 0
