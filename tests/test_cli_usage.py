"""Usage errors on the command line: a one-line message and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["status"], "Missing option '--name'"),
        (["status", "--name", "m", "--bogus"], "No such option: --bogus"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_usage_errors_exit_2_without_traceback(argv, expected):
    result = subprocess.run([sys.executable, "-m", "servegate", *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_help_exits_0_and_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "servegate", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("deploy", "rollback", "status", "serve", "demo"):
        assert command in result.stdout
