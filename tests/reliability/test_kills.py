"""SIGKILL ``servegate deploy`` at every step boundary and at random moments; production must not notice.

One workspace per test, one sequence of deploys in it: a first deploy
promotes version 1 and a production bundled server starts on the store's
production path (every later deploy passes ``--production-url``, so
production verification is a real step). Then each planned kill runs as a
deploy of its own; the killed runs double as the "next deploy" that repairs
the previous kill (reaping its canary, recovering the store, closing its
MLflow run). After each kill production holds only complete versions and
serves what it served before or the fully promoted new version, on disk and on
the production server. A last deploy runs to its end and must be promoted with
a version number never used before, leaving nothing behind.
"""

from __future__ import annotations

import random

import pytest

from tests.reliability.harness import (
    Workspace,
    check_clean,
    check_production,
    complete_versions,
    leftover_work_dirs,
    served_versions,
)

NAME = "killme"

#: Every step boundary of the pipeline, in the order the pipeline reaches them.
STEP_BOUNDARIES = (
    "after_export",                  # SavedModel exported in the work dir, nothing in the store yet
    "store:stage:copied",            # during stage: the copy complete in a temp dir, not renamed into place
    "canary_up",                     # the canary is AVAILABLE
    "during_validation",             # 0.3 s into validation: requests in flight to the canary
    "store:promote:before-rename",   # during promote: the lock held, production untouched
    "store:promote:renamed",         # during promote: production has the new version, history not yet written
    "during_verify",                 # production verification polling the production server
)

#: Kills that come before promotion starts: production must be exactly as it was.
BEFORE_PROMOTION = frozenset(STEP_BOUNDARIES[:5])


def _used_versions(ws: Workspace) -> set[int]:
    status = ws.model_store().status(NAME, history_limit=10_000)
    used = {v for vs in status.versions.values() for v in vs}
    return used | {r.version for r in status.history if r.version is not None}


def run_kill_plan(ws: Workspace, files, plan: list[dict], docker_image: str | None, final_serving: str) -> list:
    """Deploy v1, then one deploy per entry of ``plan`` (each killed), then one that completes."""
    first = ws.deploy(files.good, NAME, files.reference, config=files.config)
    assert first.returncode == 0, first.describe()
    server = ws.start_production_server(NAME)
    served = 1
    used = _used_versions(ws)
    results = []
    for step in plan:
        kwargs = dict(step)
        serving = kwargs.pop("serving", "process")
        result = ws.deploy(files.good, NAME, files.reference, config=files.config, serving=serving,
                           docker_image=docker_image if serving == "docker" else None,
                           production_url=server.rest_url, **kwargs)
        results.append(result)
        if "kill_at" in step:
            assert result.killed and result.kill_point == step["kill_at"], result.describe()
        # Production: complete versions only, the old one or a fully promoted new one, on disk and served.
        unchanged = step.get("kill_at") in BEFORE_PROMOTION
        now = check_production(ws, NAME, served, used, unchanged=unchanged)
        assert served_versions(server.rest_url, NAME)[-1] in {served, now}
        used |= _used_versions(ws)
        served = now
    last = ws.deploy(files.good, NAME, files.reference, config=files.config, serving=final_serving,
                     docker_image=docker_image if final_serving == "docker" else None,
                     production_url=server.rest_url)
    assert last.returncode == 0, last.describe()
    assert last.outcome["verdict"] == "promoted"
    assert last.version not in used and last.version > max(used), (last.version, sorted(used))
    assert served_versions(server.rest_url, NAME)[-1] == last.version
    check_clean(ws, NAME)
    assert max(complete_versions(ws.store / "production" / NAME)) == last.version
    assert not leftover_work_dirs(ws, NAME), f"killed attempts left work dirs: {leftover_work_dirs(ws, NAME)}"
    return results


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.docker
def test_kill_at_every_step_boundary_both_runners(workspace, model_files, local_image):
    """Every step boundary once with the process runner, the canary's two live steps with Docker."""
    plan = [{"kill_at": point} for point in STEP_BOUNDARIES]
    plan += [{"kill_at": "canary_up", "serving": "docker"}, {"kill_at": "during_validation", "serving": "docker"}]
    run_kill_plan(workspace, model_files, plan, local_image, final_serving="docker")


@pytest.mark.reliability
@pytest.mark.slow
def test_kill_sweep_process_runner(workspace, model_files):
    """Each boundary twice, then ten random moments (process runner): 24 kills."""
    rng = random.Random(6)
    plan = [{"kill_at": point} for point in STEP_BOUNDARIES for _ in range(2)]
    plan += [{"kill_after_s": rng.uniform(2.0, 16.0)} for _ in range(10)]
    run_kill_plan(workspace, model_files, plan, None, final_serving="process")


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.docker
def test_kill_sweep_docker_runner(workspace, model_files, local_image):
    """Every boundary once and five random moments with the Docker runner: 12 kills."""
    rng = random.Random(7)
    plan = [{"kill_at": point, "serving": "docker"} for point in STEP_BOUNDARIES]
    plan += [{"kill_after_s": rng.uniform(2.0, 18.0), "serving": "docker"} for _ in range(5)]
    run_kill_plan(workspace, model_files, plan, local_image, final_serving="docker")
