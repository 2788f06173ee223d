"""``servegate status`` and ``servegate rollback``: the model store from the command line.

The store root is ``--store``, else ``$SERVEGATE_STORE``, else the default of
:func:`servegate.settings.resolve_store_root` (as every command). Errors (bad name, nothing to roll
back to, a lock held by someone else, ...) come out as ``error: ...`` on stderr
with exit code 2, and with ``--json`` as one error object on stdout (see
:func:`servegate.cli.main`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from servegate.cli.app import app

StoreOption = Annotated[
    Optional[Path],
    typer.Option("--store", help="Store root (default: $SERVEGATE_STORE, else ~/.servegate/store).",
                 show_default=False),
]
NameOption = Annotated[str, typer.Option("--name", help="Model name (the TF Serving model name).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def _store(root: Path | None, **kwargs):
    from servegate.model_store import ModelStore
    from servegate.settings import resolve_store_root

    return ModelStore(resolve_store_root(root), **kwargs)


def _versions(versions: list[int]) -> str:
    return ", ".join(map(str, versions)) if versions else "-"


def format_status(status) -> str:
    """The human-readable form of a :class:`StoreStatus`."""
    lines = [f"model {status.model}  (store {status.root})"]
    if status.serving_version is None:
        lines.append("production serves: nothing (no version in production)")
    else:
        lines.append(f"production serves: version {status.serving_version}")
    lines.append(f"  production  {_versions(status.versions['production']):<24} {status.base_paths['production']}")
    lines.append(f"  staging     {_versions(status.versions['staging']):<24} {status.base_paths['staging']}")
    lines.append(f"  rejected    {_versions(status.versions['rejected']):<24} {status.base_paths['rejected']}")
    for version, reason in sorted(status.rejected_reasons.items()):
        lines.append(f"    {version}: {reason}")
    lines.append(f"next version: {status.next_version}")
    if status.lock_holder:
        holder = status.lock_holder
        lines.append(f"locked by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                     + (f" ({holder.get('operation')})" if holder.get("operation") else ""))
    if status.leftovers:
        lines.append("temp entries (in progress, or left by a crash; the next change removes dead ones):")
        lines += [f"  {entry}" for entry in status.leftovers]
    if status.history:
        lines.append("recent history:")
        for record in status.history:
            move = f"{record.from_area or '(new)'} -> {record.to_area or '(gone)'}"
            extra = f"  run {record.run_id}" if record.run_id else ""
            reason = f"  {record.reason}" if record.reason else ""
            lines.append(f"  {record.time}  {record.operation:<8} v{record.version:<5} {move:<24}{reason}{extra}")
    else:
        lines.append("recent history: none")
    return "\n".join(lines)


@app.command("status")
def status_command(
    name: NameOption,
    store: StoreOption = None,
    as_json: JsonOption = False,
    history: Annotated[int, typer.Option("--history", min=0, help="How many history records to show.")] = 10,
) -> int:
    """Versions per area, the version production serves, and recent history."""
    from servegate.model_store import UnknownModel
    from servegate.settings import resolve_store_root

    location = resolve_store_root(store, object_store=True)
    if not isinstance(location, Path):  # s3://BUCKET/PREFIX
        from servegate.cli.object_commands import object_status

        return object_status(location, name, as_json, history)
    model_store = _store(location)
    status = model_store.status(name, history_limit=history)
    if not status.exists:
        raise UnknownModel(f"the store {model_store.root} holds no model named {name!r}"
                           + (f"; models there: {', '.join(model_store.models()[:20])}"
                              if model_store.models() else "; it is empty"))
    if as_json:
        typer.echo(json.dumps(status.to_dict(), sort_keys=True))
    else:
        typer.echo(format_status(status))
    return 0


@app.command("rollback")
def rollback_command(
    name: NameOption,
    to: Annotated[Optional[str], typer.Option("--to", metavar="VERSION", show_default=False,
                                              help="Version to go back to (default: the previous one).")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
    lock_timeout: Annotated[float, typer.Option("--lock-timeout", min=0,
                                                help="Seconds to wait for the model's lock.")] = 30.0,
    run_id: Annotated[Optional[str], typer.Option("--run-id", show_default=False,
                                                  help="What caused it (a deploy's MLflow run id, a ticket): "
                                                       "kept in the store's history and on the MLflow rollback run."
                                                  )] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why: the rolled-back versions' MLflow reason.")
                      ] = "rolled back from the command line",
    tracking_uri: Annotated[Optional[str], typer.Option(
        "--tracking-uri", show_default=False,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///~/.servegate/mlflow.db).")] = None,
) -> int:
    """Make production serve the previous version (or --to VERSION); newer ones go to rejected/.

    MLflow follows in the same call: champion names the version production serves, the rolled-back
    versions are tagged verdict rolled_back with the reason, and the rollback is a run of its own.
    With PREFECT_API_URL set, the servegate.model.rolled_back event goes to that Prefect API.
    """
    from servegate.cli.deploy_run import check_prefect_api
    from servegate.model_store import InvalidVersion, UnknownVersion
    from servegate.model_store.layout import check_version
    from servegate.release import Release
    from servegate.settings import resolve_store_root

    try:
        # Parsed here, not by the option type, so that a bad value is a named store error (exit 2).
        to_version = None if to is None else check_version(to, what="--to version")
        store_root = resolve_store_root(store, object_store=True)
        prefect_api = check_prefect_api()  # unreachable: refused before production changes
        release = Release(store_root, tracking_uri, lock_timeout=lock_timeout)
        result = release.rollback(name, to_version=to_version, reason=reason, run_id=run_id)
    except (InvalidVersion, UnknownVersion) as exc:
        exc.subject = "--to"  # the version asked for is what is wrong
        raise
    if as_json:
        # the store's fields as before (model, rejected, ...), then what MLflow and Prefect recorded
        data = {"model": result.model_name, "rejected": result.versions, **result.to_dict()}
        typer.echo(json.dumps(data, sort_keys=True))
        if result.event_error:
            typer.echo(f"warning: production changed, but {result.event_error}", err=True)
        return 0
    if result.changed:
        typer.echo(f"model {name}: production now serves version {result.to_version} "
                   f"(was {result.from_version}); moved to rejected/ (rolled back): "
                   f"{', '.join(map(str, result.versions))}")
    else:
        typer.echo(f"model {name}: production already serves version {result.to_version}; nothing changed")
    champion = result.champion_registry_version
    typer.echo(f"MLflow: rollback run {result.mlflow_run_id}; champion -> "
               + (f"registry version {champion}" if champion else "none (that version was never registered)"))
    if result.changed:
        typer.echo(_event_line(result, prefect_api))
    return 0


def _event_line(result, prefect_api: str | None) -> str:
    if result.event_id:
        return f"Prefect: event servegate.model.rolled_back {result.event_id} sent to {prefect_api}"
    if result.event_error:
        return f"Prefect: no event: {result.event_error}"
    return "Prefect: no event (no PREFECT_API_URL set: no Prefect server whose Automations could hear it)"
