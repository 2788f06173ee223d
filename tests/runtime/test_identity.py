"""ProcessIdentity: the one liveness rule (same host, same pid, same start ticks) and its record forms."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from servegate.model_store.history import HistoryRecord
from servegate.runtime.identity import ProcessIdentity, abandoned, start_ticks
from tests.runtime.conftest import wait_until


def test_this_process_is_alive():
    me = ProcessIdentity.current()
    assert (me.pid, me.host) == (os.getpid(), socket.gethostname())
    assert me.start_ticks == start_ticks(os.getpid()) and me.start_ticks is not None
    assert me.is_alive() is True and not me.is_dead()


def test_a_recycled_pid_with_other_start_ticks_is_dead(sleeper):
    # The pid runs, but a process that started at another time held it: not the recorded process.
    recycled = ProcessIdentity.of_local(sleeper.pid, start_ticks(sleeper.pid) + 1)
    assert recycled.is_alive() is False and recycled.is_dead()
    same = ProcessIdentity.of_local(sleeper.pid, start_ticks(sleeper.pid))
    assert same.is_alive() is True and not same.is_dead()


def test_an_ended_process_is_dead(dead_identity):
    assert dead_identity.is_alive() is False and dead_identity.is_dead()


def test_a_zombie_is_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = ProcessIdentity.of_local(proc.pid, start_ticks(proc.pid))
    try:
        # Exited but not waited for: a zombie keeps its pid, and has done all it will ever do.
        assert wait_until(identity.is_dead)
        os.kill(proc.pid, 0)  # the pid still exists: only the zombie state tells
    finally:
        proc.wait()


def test_another_hosts_process_is_unknown_never_dead(dead_identity):
    elsewhere = ProcessIdentity(dead_identity.pid, dead_identity.start_ticks, "another-host.example")
    assert elsewhere.is_alive() is None and not elsewhere.is_dead()
    assert not abandoned(dead_identity.pid, "another-host.example", dead_identity.start_ticks)
    assert abandoned(dead_identity.pid, socket.gethostname(), dead_identity.start_ticks)


def test_a_record_without_start_ticks_matches_any_start_time(sleeper, dead_identity):
    # Records written before start ticks were recorded: a running pid is taken as the same process.
    assert ProcessIdentity.of_local(sleeper.pid).is_alive() is True
    assert ProcessIdentity.of_local(dead_identity.pid).is_dead()


def test_abandoned_reads_strings_and_refuses_records_without_a_pid(sleeper):
    host = socket.gethostname()
    ticks = start_ticks(sleeper.pid)
    assert not abandoned(str(sleeper.pid), host, str(ticks))         # MLflow tags are strings
    assert abandoned(str(sleeper.pid), host, str(ticks + 1))
    assert not abandoned(sleeper.pid, host, "None")                  # unknown ticks: any start time
    assert not abandoned(None, host) and not abandoned("x", host) and not abandoned(0, host)
    sleeper.send_signal(signal.SIGKILL)
    sleeper.wait()
    assert abandoned(sleeper.pid, host, ticks)


def test_dict_labels_and_string_round_trip():
    me = ProcessIdentity.current()
    assert ProcessIdentity.from_dict(me.to_dict()) == me
    owner = me.to_dict("owner_")
    assert set(owner) == {"owner_pid", "owner_ticks", "owner_host"}
    assert ProcessIdentity.from_dict(owner, "owner_") == me
    labels = me.to_labels()
    assert labels == {"servegate.owner_pid": str(me.pid), "servegate.owner_ticks": str(me.start_ticks),
                      "servegate.owner_host": me.host}
    assert ProcessIdentity.from_dict(labels, "servegate.owner_") == me
    assert ProcessIdentity.parse(str(me)) == me
    unknown = ProcessIdentity(12, None, "h")
    assert ProcessIdentity.parse(str(unknown)) == unknown
    assert unknown.to_labels()["servegate.owner_ticks"] == ""
    assert ProcessIdentity.from_dict(unknown.to_labels(), "servegate.owner_") == unknown
    for bad in ("", "12@", "x-1@h", "12-y@h", "12-1"):
        assert ProcessIdentity.parse(bad) is None, bad


def test_a_record_without_a_host_is_local_only_when_the_caller_says_so():
    record = {"owner_pid": os.getpid(), "owner_ticks": start_ticks(os.getpid())}  # a runner's pid file
    assert ProcessIdentity.from_dict(record, "owner_") is None
    assert ProcessIdentity.from_dict(record, "owner_", default_host=socket.gethostname()).is_alive() is True


def test_history_lines_old_and_new(dead_identity):
    host = socket.gethostname()
    old = HistoryRecord.from_dict({"time": "t", "model": "m", "version": 1, "from_area": None,
                                   "to_area": "staging", "pid": os.getpid(), "host": host})  # no ticks
    assert old.ticks is None and ProcessIdentity.from_history(old).is_alive() is True
    new = HistoryRecord(time="t", model="m", version=1, from_area=None, to_area="staging",
                        pid=dead_identity.pid, host=host, ticks=dead_identity.start_ticks)
    assert ProcessIdentity.from_history(HistoryRecord.from_dict(new.to_dict())).is_dead()
    no_pid = HistoryRecord(time="t", model="m", version=1, from_area=None, to_area="staging")
    assert not ProcessIdentity.from_history(no_pid).is_dead()
