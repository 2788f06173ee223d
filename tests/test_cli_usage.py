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
    ("deploy", ["--unsafe-deserialization", "--force-new-version", "--production-url", "--custom-objects",
                "--canary-deadline"]),
    ("rollback", ["--lock-timeout", "--tracking-uri"]),
])
def test_help_in_a_pipe_names_every_option_whole(command, options):
    """CI logs and `| less` are not terminals: rich's 80-column default cut the longer option names."""
    result = run_servegate(command, "--help", env={"COLUMNS": None, "TERMINAL_WIDTH": None}, timeout=120)
    assert result.returncode == 0, result.stderr
    words = set(result.stdout.replace("│", " ").split())
    missing = [option for option in options if option not in words]
    assert not missing, result.stdout


def test_a_canary_deadline_of_zero_is_refused_naming_the_flag(tmp_path):
    """A value the user set is applied or refused by name, never dropped for the config's default."""
    (tmp_path / "r.csv").write_text("x,label\n1,2\n")
    result = run_servegate("deploy", "--model", str(tmp_path / "m.keras"), "--name", "m",
                           "--reference", str(tmp_path / "r.csv"), "--canary-deadline", "0", home=tmp_path,
                           timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--canary-deadline" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
