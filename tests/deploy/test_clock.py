"""The outcome's wall_s/startup_s clock counts from the process's start, not from servegate's import."""

from __future__ import annotations

import subprocess
import sys


def test_process_age_counts_from_the_process_start():
    # a process that waits 1.5 s before importing the clock: the age includes that wait
    code = "import time; time.sleep(1.5); from servegate.deploy.clock import process_age_s; print(process_age_s())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.5 <= age < 60, age


def test_process_age_grows():
    import time

    from servegate.deploy.clock import process_age_s

    first = process_age_s()
    time.sleep(0.05)
    assert 0 < first < process_age_s()
