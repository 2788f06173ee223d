"""How long the process running a deploy has been alive: the outcome's ``wall_s`` and ``startup_s``.

The user waits from the moment the process starts (``servegate deploy`` typed,
a worker spawning the flow run), interpreter start and imports included, so the
clock starts at the process's start time: field 22 of ``/proc/self/stat``
(clock ticks since boot, the clock ``CLOCK_BOOTTIME`` reads). Where ``/proc``
cannot be read, it starts when this module is first imported.
"""

from __future__ import annotations

import os
import time


def _now_s() -> float:
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else time.monotonic()


def _process_start_s() -> float:
    """This process's start on the :func:`_now_s` clock."""
    from servegate.runtime.identity import start_ticks

    ticks = start_ticks(os.getpid())  # the one reader of /proc/<pid>/stat
    if ticks is None:
        return _now_s()
    started = ticks / os.sysconf("SC_CLK_TCK")
    now = _now_s()
    # another clock than the kernel's start time (no CLOCK_BOOTTIME): count from now instead
    return started if 0 <= now - started < 365 * 86400 and hasattr(time, "CLOCK_BOOTTIME") else now


_STARTED_S = _process_start_s()


def process_age_s() -> float:
    """Seconds since this process started (10 ms resolution: clock ticks)."""
    return round(_now_s() - _STARTED_S, 3)
