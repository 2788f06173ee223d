"""servegate.deploy.cancel on its own, in a subprocess (signals and the process-wide note stay there).

The whole path (a deploy cancelled from outside during validation) is
tests/reliability/test_cancel.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r'''
import json, os, signal, time
from servegate.deploy import cancel
from servegate.deploy.verdict import failure_reason

seen = {"before": failure_reason(ValueError("SavedModel production/bc/10 cannot be loaded"))}
try:
    with cancel.handlers():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    seen["raised"] = None
except cancel.DeployCancelled as exc:
    seen["raised"] = [str(exc), exc.signal, exc.exit_code]
with cancel.handlers(raising=False):  # an undo: a second signal is only noted
    os.kill(os.getpid(), signal.SIGINT)
    seen["undo_finished"] = True
seen["after"] = failure_reason(ValueError("SavedModel production/bc/10 cannot be loaded"))
seen["exit_code"] = cancel.exit_code()
print(json.dumps(seen))
'''


def test_a_signal_is_the_reason_whatever_the_code_raised():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["before"] == "SavedModel production/bc/10 cannot be loaded"
    assert seen["raised"] == ["cancelled by SIGTERM", "SIGTERM", 143]
    assert seen["undo_finished"] is True
    assert seen["after"] == "cancelled by SIGTERM" and seen["exit_code"] == 143


_FINALIZER_SCRIPT = r'''
import gc, json, os, signal, time
from servegate.deploy import cancel

class Resource:
    """Stands in for TensorFlow's objects, whose __del__ runs Python code when garbage is collected."""

    def __init__(self):
        self.cycle = self  # freed only by the collector, as TensorFlow's functions often are

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the signal lands while the finalizer runs
        sum(range(10_000))

seen = {"raised": None}
try:
    with cancel.handlers():
        Resource()
        gc.collect()
        deadline = time.monotonic() + 10  # the step goes on; the cancellation must not wait for its end
        while time.monotonic() < deadline:
            pass
        seen["step_finished"] = True
except cancel.DeployCancelled as exc:
    seen["raised"] = str(exc)
print(json.dumps(seen))
'''


def test_a_signal_that_lands_in_a_finalizer_still_cancels_at_once_and_prints_no_traceback():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _FINALIZER_SCRIPT], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"raised": "cancelled by SIGTERM"}, seen  # raised, and the step did not run on to its end
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
