"""Usage errors on the command line: a one-line message and exit 2, never a traceback."""

from __future__ import annotations

import pytest

from tests.support.cli import run_servegate


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["status"], "Missing option '--name'"),
        (["status", "--name", "m", "--bogus"], "No such option: --bogus"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_usage_errors_exit_2_without_traceback(argv, expected):
    result = run_servegate(*argv, timeout=120)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_help_exits_0_and_lists_every_command():
    result = run_servegate("--help", timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("deploy", "rollback", "status", "serve", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command, options", [
    ("serve", ["--monitoring-config-file", "--warmup", "--no-warmup"]),
    ("deploy", ["--unsafe-deserialization", "--force-new-version", "--production-url", "--custom-objects"]),
    ("rollback", ["--lock-timeout", "--tracking-uri"]),
])
def test_help_in_a_pipe_names_every_option_whole(command, options):
    """CI logs and `| less` are not terminals: rich's 80-column default cut the longer option names."""
    result = run_servegate(command, "--help", env={"COLUMNS": None, "TERMINAL_WIDTH": None}, timeout=120)
    assert result.returncode == 0, result.stderr
    words = set(result.stdout.replace("│", " ").split())
    missing = [option for option in options if option not in words]
    assert not missing, result.stdout
