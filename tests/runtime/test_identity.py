"""ProcessIdentity: the one liveness rule (same host, same pid, same start ticks) and its record forms."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from servegate.model_store.history import HistoryRecord
from servegate.runtime.identity import ProcessIdentity, abandoned, start_ticks, this_host
from tests.runtime.conftest import wait_until


def test_this_process_is_alive():
    me = ProcessIdentity.current()
    pidns = os.stat("/proc/self/ns/pid").st_ino
    assert (me.pid, me.host) == (os.getpid(), f"{socket.gethostname()}#pidns{pidns}") and me.host == this_host()
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


def test_a_record_from_another_pid_namespace_of_this_host_is_unknown(dead_identity):
    # Containers with --network host share the host name, not the pid namespace: their pids are not ours.
    other_ns = ProcessIdentity(dead_identity.pid, dead_identity.start_ticks, f"{socket.gethostname()}#pidns1")
    assert other_ns.is_alive() is None and not other_ns.is_dead()
    assert not abandoned(dead_identity.pid, other_ns.host, dead_identity.start_ticks)
    # A bare host name (a record written before namespaces were recorded) is judged as this host's.
    assert abandoned(dead_identity.pid, socket.gethostname(), dead_identity.start_ticks)


def _unshare_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"], capture_output=True).returncode == 0


def test_a_process_in_its_own_pid_namespace_is_never_judged_by_our_proc():
    if not _unshare_available():
        pytest.skip("needs root and unshare(1) to start a process in a new pid namespace")
    # pid 1 in a new namespace: here pid 1 is our init, alive; judged by our /proc the record would be
    # "alive" or (with other ticks) "dead", both wrong. Its identity names another host.
    code = "import json; from servegate.runtime.identity import ProcessIdentity as P; print(json.dumps(P.current().to_dict()))"
    done = subprocess.run(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    theirs = ProcessIdentity.from_dict(json.loads(done.stdout))
    assert theirs.pid == 1 and theirs.host != this_host() and theirs.host.startswith(socket.gethostname() + "#pidns")
    assert theirs.is_alive() is None and not theirs.is_dead()
