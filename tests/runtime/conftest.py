"""Fixtures of the runtime tests: processes that are alive, dead, or a zombie."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from servegate.runtime.identity import ProcessIdentity, start_ticks


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def sleeper():
    """A live child process in its own session (so that a test may kill its group)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    assert wait_until(lambda: start_ticks(proc.pid) is not None)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_identity() -> ProcessIdentity:
    """The identity of a process of this host that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = ProcessIdentity.of_local(proc.pid, start_ticks(proc.pid))
    proc.wait()
    return identity
