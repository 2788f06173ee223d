"""Prefect starts reliably on a first run (a brand-new HOME: no ~/.prefect), on every entry point.

Prefect's ephemeral server creates its database on a first start; on a busy machine that took longer
than Prefect's default start-up limit (20 s), and the README's first command died with "Timed out while
attempting to connect to ephemeral Prefect API server". servegate waits up to
``FIRST_START_TIMEOUT_S`` unless the user set ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
(environment or profile), whose value then applies as given."""

from __future__ import annotations

import subprocess
import sys

import pytest

from servegate.flows.local_api import FIRST_START_TIMEOUT_S, STARTUP_TIMEOUT_VAR
from tests.support.cli import REPO, VENV_BIN, fresh_env

# The flows called from Python, as a user would: import the flow modules, call one (Prefect's own
# ephemeral server starts at its first API call). Prints Prefect's effective start-up limit.
DIRECT_CALL = """
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as LIMIT
import servegate.flows.deploy, servegate.flows.rollback, servegate.demo.train_demo
from servegate.flows.watch import deploy_newest_export
print("limit", LIMIT.value(), flush=True)
print("result", deploy_newest_export(name="first"), flush=True)
"""

LIMITS = """
from servegate.flows.local_api import allow_slow_first_start, startup_timeout_s
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as LIMIT
allow_slow_first_start()
print(startup_timeout_s(), LIMIT.value())
"""


def _python(code: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


# Long (a whole deploy or more): CI's second step runs it (-m reliability); the default suite stays under 10 minutes.
@pytest.mark.reliability
@pytest.mark.slow
def test_flow_called_directly_on_a_fresh_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = _python(DIRECT_CALL, fresh_env(home))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"limit {FIRST_START_TIMEOUT_S}" in done.stdout, done.stdout
    assert "'reason': 'no exported model'" in done.stdout, done.stdout
    assert (home / ".prefect").is_dir() and (home / ".servegate" / "exports").is_dir()


@pytest.mark.slow
def test_a_configured_limit_applies_as_given(tmp_path):
    """The environment's value, then a profile's (``prefect config set``), wins over servegate's default."""
    home = tmp_path / "home"
    home.mkdir()
    env = fresh_env(home)
    done = _python(LIMITS, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [f"{FIRST_START_TIMEOUT_S:.1f}", str(FIRST_START_TIMEOUT_S)]

    done = _python(LIMITS, {**env, STARTUP_TIMEOUT_VAR: "33"})
    assert done.stdout.split() == ["33.0", "33"], done.stdout + done.stderr[-2000:]

    prefect = str(VENV_BIN / "prefect")
    subprocess.run([prefect, "config", "set", f"{STARTUP_TIMEOUT_VAR}=44"], env=env, check=True,
                   capture_output=True, timeout=120)
    done = _python(LIMITS, env)
    assert done.stdout.split() == ["44.0", "44"], done.stdout + done.stderr[-2000:]
