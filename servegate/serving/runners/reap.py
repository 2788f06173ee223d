"""Reaping: remove canaries left behind by runs that were killed before they could stop them.

A run that is SIGKILLed never runs ``runner.stop()``. What it leaves is marked:

- **process canaries** have a pid file in ``$SERVEGATE_HOME/run/canary-processes``
  naming the owner (pid + start time) and the server's process group;
- **container canaries** carry the labels ``servegate.managed=true``,
  ``servegate.owner_pid``, ``servegate.owner_ticks`` and ``servegate.owner_host``.

A leftover is reaped when its owner is gone (pid not running, or running but
with another start time, i.e. a recycled pid), or, with ``all_of_model=True``,
whenever it serves the named model (for an operator clearing a model's canaries).
Containers made on another host (a shared engine) are only reaped with
``all_of_model``. Every runner's ``start()`` calls the reaper first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from servegate.runtime.identity import ProcessIdentity, group_exists, start_ticks, this_host
from servegate.serving.runners.state import process_state_dir

MANAGED_LABEL = "servegate.managed"


@dataclass
class ReapReport:
    """What a reap removed: container ids and process-group ids; whether the Docker engine was asked."""

    containers: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    docker_checked: bool = False


def _owner_gone(record: Mapping[str, object], prefix: str) -> bool:
    """Whether the owner a pid file or a container's labels name is dead (runtime.identity's rule).

    Pid files name no host (they live in this host's ``$SERVEGATE_HOME``); a
    record without an owner pid has no owner to wait for.
    """
    owner = ProcessIdentity.from_dict(record, prefix, default_host=this_host())
    return owner is None or owner.is_dead()


def reap_processes(state_dir: Path | None = None, model_name: str | None = None,
                   all_of_model: bool = False) -> list[int]:
    """Kill the process groups of dead owners' canaries and remove their pid files and work dirs."""
    state_dir = Path(state_dir) if state_dir else process_state_dir()
    reaped: list[int] = []
    if not state_dir.is_dir():
        return reaped
    for pid_file in sorted(state_dir.glob("*.json")):
        try:
            record = json.loads(pid_file.read_text())
        except (OSError, ValueError):
            continue  # being written or already removed by a concurrent reaper
        if model_name is not None and record.get("model") != model_name:
            continue
        if not (all_of_model and model_name is not None) and not _owner_gone(record, "owner_"):
            continue
        pgid = int(record["pgid"])
        leader_ticks = start_ticks(int(record["server_pid"]))
        # Signal the group only if it is still ours: the leader is the same process, or the leader is
        # gone and members remain (a pgid is not recycled while members use it).
        ours = leader_ticks == record.get("server_ticks") or leader_ticks is None
        if ours and group_exists(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
                reaped.append(pgid)
            except ProcessLookupError:
                pass
        workdir = record.get("workdir")
        if workdir and Path(workdir).name.startswith("servegate-canary-"):
            shutil.rmtree(workdir, ignore_errors=True)
        pid_file.unlink(missing_ok=True)
    return reaped


def reap_containers(client, model_name: str | None = None, all_of_model: bool = False) -> list[str]:
    """Remove servegate-labelled containers whose owner is gone (or all of ``model_name``'s)."""
    import docker.errors

    filters = {"label": [f"{MANAGED_LABEL}=true"]}
    if model_name is not None:
        filters["label"].append(f"servegate.model={model_name}")
    removed: list[str] = []
    for container in client.containers.list(all=True, filters=filters):
        labels = container.labels
        if not (all_of_model and model_name is not None) and not _owner_gone(labels, "servegate.owner_"):
            continue
        try:
            container.remove(force=True)
            removed.append(container.id)
        except docker.errors.NotFound:
            pass  # removed by a concurrent reaper
    return removed


def reap(*, docker_client=None, docker: bool = True, model_name: str | None = None, all_of_model: bool = False,
         state_dir: Path | None = None) -> ReapReport:
    """Reap process and container canaries of killed runs; see the module docstring.

    Containers are checked on ``docker_client`` or, with ``docker=True`` and no
    client, on the engine ``docker.from_env()`` finds; an unreachable engine is
    skipped (``docker_checked`` stays False): nothing there could be running
    for us.
    """
    report = ReapReport(processes=reap_processes(state_dir, model_name, all_of_model))
    client = docker_client
    if client is None and docker:
        import docker as docker_sdk

        try:
            client = docker_sdk.from_env()
            client.ping()
        except Exception:  # docker.errors.DockerException, requests ConnectionError
            client = None
    if client is not None:
        report.containers = reap_containers(client, model_name, all_of_model)
        report.docker_checked = True
    return report
