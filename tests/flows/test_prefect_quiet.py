"""The documented Prefect setup runs quietly: docs/deploying-with-prefect.md's "Running the deployments"
commands, run as written (a brand-new HOME, the checkout's venv), then the worker polls for a while with
the registered deployments (deploy-newest-export's schedule gives it runs). The server's log must hold no
``database is locked``, no traceback and no ERROR or WARNING entry (telemetry calls to the outside
included: the documented profile turns analytics off); the worker's log no traceback."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.cli import REPO
from tests.support.logs import problems
from tests.support.prefect_stack import WORKER_QUERY_SECONDS, PrefectStack

# A server's first start, `prefect deploy`, then the worker polling: CI's second step.
pytestmark = [pytest.mark.reliability, pytest.mark.slow]

POLL_S = 45  # about 45 worker polls at 1 s; Prefect 3.7.2 on SQLite logged `database is locked` within two
_NOISE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| (WARNING|ERROR|CRITICAL) ", re.M)


def documented_commands() -> list[str]:
    """The commands of the first ``sh`` block under "## Running the deployments", comments dropped."""
    text = (REPO / "docs" / "deploying-with-prefect.md").read_text()
    section = text.split("## Running the deployments", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


class DocumentedStack(PrefectStack):
    """A user's shell: nothing Prefect-related set but what the documented commands set."""

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.pop("PREFECT_SERVER_ANALYTICS_ENABLED", None)
        return env


def test_the_documented_server_and_worker_log_no_lock_error_traceback_or_warning(tmp_path):
    commands = documented_commands()
    assert commands[0] == "prefect config set PREFECT_SERVER_ANALYTICS_ENABLED=false", commands
    assert commands[1].startswith("prefect server start"), commands
    # the worker as documented, polling every second (PrefectStack.start_worker starts it so)
    assert (f"PREFECT_WORKER_QUERY_SECONDS={WORKER_QUERY_SECONDS} prefect worker start --pool servegate-process"
            in commands), commands
    stack = DocumentedStack(home=tmp_path / "fresh-home")
    stack.home.mkdir()
    try:
        stack.prefect(*commands[0].split()[1:])
        stack.start_server()
        stack.register()  # `prefect work-pool create ...` and `prefect deploy --all`, as documented
        stack.start_worker()
        time.sleep(POLL_S)
    finally:
        stack.close()
    server_log = stack.server_log.read_text(errors="replace")
    assert "database is locked" not in server_log, server_log[server_log.find("database is locked") - 3000:][:5000]
    found = problems(server_log)
    assert not found, "prefect server logged:\n" + "\n---\n".join(found[:3])
    noise = [m.group(0) + server_log[m.end():].split("\n", 1)[0] for m in _NOISE.finditer(server_log)]
    assert not noise, noise[:5]
    worker_log = stack.worker_log.read_text(errors="replace")
    assert "Traceback (most recent call last)" not in worker_log, worker_log[-3000:]
    assert "Worker" in worker_log and "started" in worker_log, worker_log[-2000:]
