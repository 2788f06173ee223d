"""The per-model lock across processes: a waiter names the holder; a dead holder's lock is taken over."""

from __future__ import annotations

import os
import signal
import time

import pytest

from servegate.model_store import LockTimeout, ModelStore
from servegate.model_store.locking import lock_is_held
from tests.model_store.conftest import spawn_child
from tests.model_store.treeutil import diff_snapshots, snapshot_tree


def _wait_for(proc, word: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == word:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode}: {proc.stderr.read()}")
    raise AssertionError(f"child never said {word!r}")


@pytest.fixture
def holder(root, model_src):
    ModelStore(root).stage("m", model_src)
    proc = spawn_child("hold-lock", {"root": str(root), "model": "m", "operation": "deploy", "run_id": "run-42"})
    _wait_for(proc, "held")
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def test_waiter_times_out_naming_the_holder(root, model_src, holder):
    store = ModelStore(root, lock_timeout=0.5)
    before = snapshot_tree(root)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as err:
        store.promote("m", 1)
    waited = time.monotonic() - started
    assert 0.4 <= waited < 5
    message = str(err.value)
    assert f"pid {holder.pid}" in message
    assert "since 20" in message  # an ISO timestamp
    assert "operation deploy" in message and "run run-42" in message
    assert "'m'" in message and str(store.layout.lock_file("m")) in message
    assert err.value.holder["pid"] == holder.pid
    assert diff_snapshots(before, snapshot_tree(root)) == []
    for call in (lambda: store.stage("m", model_src), lambda: store.reject("m", 1, "x"), lambda: store.recover("m")):
        with pytest.raises(LockTimeout, match=f"pid {holder.pid}"):
            call()
    assert store.status("m").lock_holder["pid"] == holder.pid


def test_dead_holders_lock_is_taken_over(root, model_src, holder):
    holder_file = ModelStore(root).layout.holder_file("m")
    assert holder_file.exists()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    # The kernel released the flock; the holder file is a stale leftover.
    assert holder_file.exists()
    assert not lock_is_held(ModelStore(root).layout.lock_file("m"))
    assert ModelStore(root).status("m").lock_holder is None
    store = ModelStore(root, lock_timeout=2.0)
    started = time.monotonic()
    store.promote("m", 1)
    assert time.monotonic() - started < 1.5
    assert not holder_file.exists()
    assert not lock_is_held(store.layout.lock_file("m"))


def test_lock_timeout_message_when_holder_left_no_record(root, model_src, holder):
    store = ModelStore(root, lock_timeout=0.2)
    store.layout.holder_file("m").unlink()
    with pytest.raises(LockTimeout, match="left no holder information"):
        store.stage("m", model_src)


def test_lock_held_by_an_outer_block_across_steps(root, model_src):
    """The deploy flow may hold the lock from stage to promote; another process waits for all of it."""
    store = ModelStore(root, lock_timeout=5.0)
    with store.lock("m", operation="deploy", run_id="r1") as info:
        assert info["pid"] == os.getpid()
        v = store.stage("m", model_src, run_id="r1")
        store.promote("m", v, run_id="r1")
        proc = spawn_child("stage", {"root": str(root), "model": "m", "src": str(model_src), "lock_timeout": 0.3})
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "LockTimeout" in err and f"pid {os.getpid()}" in err
    proc = spawn_child("stage", {"root": str(root), "model": "m", "src": str(model_src), "lock_timeout": 5})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # The number handed to the child that timed out was never handed out: it waited before getting one.
    assert '"version": 2' in out


def test_forked_child_waits_for_its_parents_lock(root, model_src):
    """A child forked while the parent holds the lock does not inherit the hold."""
    store = ModelStore(root, lock_timeout=0.3)
    store.stage("m", model_src)
    read_end, write_end = os.pipe()
    with store.lock("m", operation="deploy"):
        pid = os.fork()
        if pid == 0:  # child
            outcome = b"?"
            try:
                ModelStore(root, lock_timeout=0.3).stage("m", model_src)
                outcome = b"staged"
            except LockTimeout:
                outcome = b"timeout"
            except BaseException:  # noqa: BLE001
                outcome = b"error"
            finally:
                os.write(write_end, outcome)
                os._exit(0)
        os.waitpid(pid, 0)
    assert os.read(read_end, 16) == b"timeout"
    os.close(read_end)
    os.close(write_end)
    # and after the fork, the child's store works once the lock is free
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ModelStore(root).stage("m", model_src)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_share_with_threads(root, model_src):
    import threading

    store = ModelStore(root, lock_timeout=0.3)
    results = []

    def task():
        try:
            results.append(store.stage("m", model_src))
        except LockTimeout as exc:
            results.append(exc)

    with store.lock("m", operation="flow", share_with_threads=True):
        t = threading.Thread(target=task)
        t.start()
        t.join()
        proc = spawn_child("stage", {"root": str(root), "model": "m", "src": str(model_src), "lock_timeout": 0.3})
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "LockTimeout" in err  # other processes still wait
    with store.lock("m", operation="flow"):  # not shared: another thread waits
        t = threading.Thread(target=task)
        t.start()
        t.join()
    assert results[0] == 1 and isinstance(results[1], LockTimeout)
