"""One process-runner canary for a test module or session: started, AVAILABLE, stopped at the end."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import pytest


@contextlib.contextmanager
def running_canary(spec: Any, home: Path) -> Iterator[tuple[Any, float]]:
    """(runner, seconds from its start to AVAILABLE) of a bundled server serving ``spec`` (a ``CanarySpec``),
    with ``SERVEGATE_HOME`` at ``home`` while it runs; stopped on exit."""
    from servegate.serving.runners import make_runner

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERVEGATE_HOME", str(home))
        runner = make_runner("process", spec)
        try:
            runner.start()
            began = time.perf_counter()
            runner.wait_until_available(120.0)
            yield runner, time.perf_counter() - began
        finally:
            runner.stop()
