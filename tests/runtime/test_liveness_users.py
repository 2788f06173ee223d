"""Every clean-up of a killed run judges its owner by runtime.identity's one rule (start ticks included)."""

from __future__ import annotations

import json
import os
import socket
from types import SimpleNamespace

import pytest

from servegate.model_store.locking import describe_holder
from servegate.runtime.identity import ProcessIdentity, start_ticks
from servegate.serving.runners.reap import reap_containers, reap_processes
from tests.runtime.conftest import wait_until


def _pid_file(state_dir, canary, owner_ticks):
    state_dir.mkdir(exist_ok=True)
    record = {"owner_pid": os.getpid(), "owner_ticks": owner_ticks, "server_pid": canary.pid,
              "server_ticks": start_ticks(canary.pid), "pgid": canary.pid, "model": "m", "versions": [1],
              "run_id": None, "workdir": "/nonexistent", "started": 0}
    path = state_dir / f"{canary.pid}.json"
    path.write_text(json.dumps(record))
    return path


def test_canary_of_a_live_owner_stays(tmp_path, sleeper):
    pid_file = _pid_file(tmp_path / "run", sleeper, start_ticks(os.getpid()))
    assert reap_processes(state_dir=tmp_path / "run") == []
    assert pid_file.exists() and sleeper.poll() is None


def test_canary_whose_owner_pid_was_recycled_is_reaped(tmp_path, sleeper):
    # The owner's pid runs (it is ours), but with another start time: the owner that wrote it is gone.
    pid_file = _pid_file(tmp_path / "run", sleeper, start_ticks(os.getpid()) + 1)
    assert reap_processes(state_dir=tmp_path / "run") == [sleeper.pid]
    assert not pid_file.exists() and wait_until(lambda: sleeper.poll() is not None)


class _Container:
    def __init__(self, labels):
        self.labels, self.id, self.removed = labels, f"c{len(labels)}-{id(self)}", False

    def remove(self, force):
        self.removed = True


@pytest.mark.parametrize("host, ticks_delta, removed", [
    (socket.gethostname(), 0, False),          # live owner
    (socket.gethostname(), 1, True),           # recycled owner pid
    ("another-host.example", 1, False),        # a shared engine: another host's owner is never judged
])
def test_containers_are_judged_by_the_same_rule(host, ticks_delta, removed):
    pytest.importorskip("docker")
    me = ProcessIdentity.current()
    owner = ProcessIdentity(me.pid, me.start_ticks + ticks_delta, host)
    container = _Container({"servegate.managed": "true", **owner.to_labels()})
    client = SimpleNamespace(containers=SimpleNamespace(list=lambda all, filters: [container]))
    assert reap_containers(client) == ([container.id] if removed else [])
    assert container.removed is removed


def test_lock_holder_with_a_recycled_pid_is_described_as_gone():
    me = ProcessIdentity.current()
    holder = {**me.to_dict(), "since": "then"}
    assert "no longer running" not in describe_holder(holder)
    holder["ticks"] = me.start_ticks + 1
    assert "no longer running" in describe_holder(holder)
    holder["host"] = "another-host.example"
    assert "no longer running" not in describe_holder(holder)
