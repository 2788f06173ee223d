"""Prefect's own server, from this venv, works: its scheduler gives prefect.yaml's scheduled deployment
its runs, and nothing in the server's log is a traceback.

The server is started as docs/deploying-with-prefect.md tells users (``prefect server start``,
``prefect work-pool create``, ``prefect deploy --all``) with a brand-new HOME. With prefect 3.7.2 and
SQLAlchemy 2.1 the scheduler logged ``Can't evaluate bulk DML statement`` on every cycle and
``deploy-newest-export`` never got a run: this test fails on that. It also fails when the installed
packages drift from pyproject.toml's pins (see test_installed_versions_match_the_pins)."""

from __future__ import annotations

import re
import time
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.support.cli import REPO
from tests.support.logs import problems
from tests.support.prefect_stack import PrefectStack

# The recent-deployments scheduler runs every 5 s; the main one every 60 s.
SCHEDULED_RUNS_WITHIN_S = 90
# After the first runs appear, keep watching the log over more scheduler cycles.
MORE_CYCLES_S = 15


def _pinned_requirements() -> list[Requirement]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version.strip()
    return pins


def test_installed_versions_match_the_pins():
    """Every dependency in pyproject.toml is installed at a version its pin allows, and every package in
    constraints.txt at exactly that version: a stale or drifted venv fails here, not as a broken scheduler."""
    wrong = []
    for req in _pinned_requirements():
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{req.name}: not installed (pyproject.toml wants {req.specifier})")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            wrong.append(f"{req.name}: {installed} installed, pyproject.toml wants {req.specifier}")
    for name, version in _constraints().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a platform-only package (constraints only limit what gets installed)
        if installed != version:
            wrong.append(f"{name}: {installed} installed, constraints.txt holds {version}")
    assert not wrong, "the venv drifted from the tested set (run scripts/setup.sh):\n" + "\n".join(wrong)


def test_constraints_lock_every_dependency_within_its_pin():
    """constraints.txt is the resolved set of pyproject.toml: every dependency is in it, at an allowed version."""
    locked = _constraints()
    wrong = []
    for req in _pinned_requirements():
        version = locked.get(_canonical(req.name))
        if version is None:
            wrong.append(f"{req.name}: in pyproject.toml, missing from constraints.txt")
        elif not req.specifier.contains(version, prereleases=True):
            wrong.append(f"{req.name}: constraints.txt holds {version}, pyproject.toml wants {req.specifier}")
    assert not wrong, "regenerate constraints.txt (docs/deploying-with-prefect.md, Dependencies):\n" + "\n".join(wrong)


def test_prefect_server_stack_is_pinned_exactly():
    """Prefect's server stack is pinned to the set this test file proves: prefect itself exactly (prefect.yaml's
    prefect-version too), SQLAlchemy below 2.1."""
    import yaml

    pins = {r.name.lower(): r for r in _pinned_requirements()}
    assert str(pins["prefect"].specifier) == "==3.9.1"
    assert yaml.safe_load((REPO / "prefect.yaml").read_text())["prefect-version"] == "3.9.1"
    sqlalchemy = pins["sqlalchemy"].specifier
    assert not sqlalchemy.contains("2.1.9") and sqlalchemy.contains(metadata.version("sqlalchemy"))


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    stack = PrefectStack(home=tmp_path_factory.mktemp("fresh-home"))
    try:
        stack.start_server()
        stack.register()
        yield stack
    finally:
        stack.close()


# A real `prefect server start` for ~30 s: a long proof, run by CI's second step (-m reliability).
@pytest.mark.reliability
@pytest.mark.slow
def test_scheduler_gives_the_scheduled_deployment_runs_and_logs_no_traceback(registered):
    stack = registered
    deployment = stack.deployment_id("deploy-newest-export", "deploy-newest-export")
    query = {"deployments": {"id": {"any_": [deployment]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    deadline = time.monotonic() + SCHEDULED_RUNS_WITHIN_S
    runs = []
    while time.monotonic() < deadline and not runs:
        runs = stack.post("/flow_runs/filter", query)
        found = problems(stack.server_log.read_text())
        assert not found, "prefect server logged:\n" + "\n---\n".join(found[:3])
        time.sleep(2)
    assert runs, f"no scheduled run of deploy-newest-export within {SCHEDULED_RUNS_WITHIN_S} s"
    # every 15 minutes: consecutive runs 900 s apart
    starts = sorted(r["expected_start_time"] for r in stack.post("/flow_runs/filter", query))
    assert len(starts) >= 2, starts
    time.sleep(MORE_CYCLES_S)
    log = stack.server_log.read_text()
    found = problems(log)
    assert not found, "prefect server logged:\n" + "\n---\n".join(found[:3])
    assert "prefect server start" in log or "Prefect" in log, log[-2000:]  # the log is the server's
