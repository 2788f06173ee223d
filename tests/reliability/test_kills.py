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

Random kills print their moment and the last step or store checkpoint the
deploy had reached (the deploy's trace), and a failed check names the kill
before it: a kill that lands in a rare window on one machine's timing says
which window it was.

Each move of a version in the store (stage's rename, promote, retire, reject,
rollback) is also killed exactly between its rename and its history line, with
each canary runner, each kill followed by a complete deploy: the store is
clean, every version is in the area its history says (the killed writer's line
completed by recovery, a version it staged rejected as abandoned), and MLflow's
champion is what production serves.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from tests import modelzoo
from tests.reliability.agreement import check_history_matches_areas, check_mlflow_agrees
from tests.reliability.harness import (
    DeployResult,
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

#: Each kill test runs 7 to 14 deploys: a few minutes on an idle 2-core machine, twice that on a busy one.
KILL_TEST_TIMEOUT_S = 1800

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
    for i, step in enumerate(plan, 1):
        kwargs = dict(step)
        serving = kwargs.pop("serving", "process")
        result = ws.deploy(files.good, NAME, files.reference, config=files.config, serving=serving,
                           docker_image=docker_image if serving == "docker" else None,
                           production_url=server.rest_url, **kwargs)
        results.append(result)
        print(f"kill {i}/{len(plan)} ({serving} runner): {result.kill_point or 'not killed'}", flush=True)
        with _naming(f"after kill {i} ({serving} runner, {result.kill_point})"):
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
    kills = "; ".join(f"{i}: {r.kill_point}" for i, r in enumerate(results, 1))
    with _naming(f"the complete deploy after the kills ({kills})"):
        assert last.returncode == 0, last.describe()
        assert last.outcome["verdict"] == "promoted"
        assert last.version not in used and last.version > max(used), (last.version, sorted(used))
        assert served_versions(server.rest_url, NAME)[-1] == last.version
        check_clean(ws, NAME)
        check_history_matches_areas(ws, NAME)
        assert max(complete_versions(ws.store / "production" / NAME)) == last.version
        assert not leftover_work_dirs(ws, NAME), f"killed attempts left work dirs: {leftover_work_dirs(ws, NAME)}"
    return results


@contextlib.contextmanager
def _naming(context: str):
    """A failed check says which kill (its moment and window) came before it."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{context}: {exc}") from exc


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.timeout(KILL_TEST_TIMEOUT_S)
@pytest.mark.docker
def test_kill_at_every_step_boundary_then_a_docker_deploy_repairs(workspace, model_files, local_image):
    """Every step boundary once with the process runner; the deploy that completes runs a Docker canary
    (the Docker runner's own kills are the Docker sweep's)."""
    plan = [{"kill_at": point} for point in STEP_BOUNDARIES]
    run_kill_plan(workspace, model_files, plan, local_image, final_serving="docker")


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.timeout(KILL_TEST_TIMEOUT_S)
def test_kill_sweep_process_runner(workspace, model_files):
    """Six random moments (process runner): each boundary is killed once by the test above."""
    rng = random.Random(6)
    plan = [{"kill_after_s": rng.uniform(2.0, 16.0)} for _ in range(6)]
    run_kill_plan(workspace, model_files, plan, None, final_serving="process")


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.timeout(KILL_TEST_TIMEOUT_S)
@pytest.mark.docker
def test_kill_sweep_docker_runner(workspace, model_files, local_image):
    """Every boundary once and three random moments with the Docker runner: 10 kills."""
    rng = random.Random(7)
    plan = [{"kill_at": point, "serving": "docker"} for point in STEP_BOUNDARIES]
    plan += [{"kill_after_s": rng.uniform(2.0, 18.0), "serving": "docker"} for _ in range(3)]
    run_kill_plan(workspace, model_files, plan, local_image, final_serving="docker")


# ---------------------------------------------------------------- a kill between a move and its history line

#: Each move of a version, killed between its rename and its history line, in an order that reaches each
#: (retention 3: the third kill's promotion retires the oldest of three production versions).
MOVE_KILLS = ("store:stage:renamed", "store:promote:renamed", "store:retire:renamed", "store:reject:renamed",
              "store:rollback:renamed")


def _wrong_production(ws: Workspace, version: int):
    """A production server whose ``version`` answers unlike the deploy's model: its verification fails and
    the deploy's undo rolls production back (the rollback's move is what gets killed)."""
    base = ws.root / "wrong-production" / NAME
    modelzoo.export(modelzoo.regressor(seed=0, bias_shift=3.0), base / str(version))
    return ws.start_production_server(NAME, base_path=base)


def _killed_move(ws: Workspace, files, point: str, runner: dict, production_url: str) -> tuple[int, DeployResult]:
    """The deploy killed at ``point``; returns the version it was deploying and its result."""
    version = ws.model_store().status(NAME).next_version
    model = files.broken if point == "store:reject:renamed" else files.good  # rejected by quality
    if point == "store:rollback:renamed":
        production_url = _wrong_production(ws, version).rest_url
    result = ws.deploy(model, NAME, files.reference, config=files.config, production_url=production_url,
                       kill_at=point, **runner)
    assert result.killed and result.kill_point == point, result.describe()
    return version, result


def _check_completed_line(ws: Workspace, point: str, version: int) -> None:
    """The killed writer's line, completed by recovery, names it; a version it staged was rejected as abandoned."""
    operation = point.split(":")[1]
    store = ws.model_store()
    completed = [r for r in store.history(NAME) if "completed_by" in r.detail and r.operation == operation]
    assert completed, f"no {operation} line completed by recovery: {store.history(NAME)[-6:]}"
    line = completed[-1]
    if operation != "retire":
        assert line.version == version, (line, version)
    assert line.pid != line.detail["completed_by"]["pid"]  # the killed writer, not the recovering process
    if operation == "stage":
        reason = store.status(NAME).rejected_reasons[version]
        assert reason.startswith(f"abandoned: the deploy that staged it (pid {line.pid}, MLflow run "
                                 f"{line.run_id})"), reason


def run_move_kills(ws: Workspace, files, serving: str, docker_image: str | None) -> None:
    runner = {"serving": serving, "docker_image": docker_image}
    first = ws.deploy(files.good, NAME, files.reference, config=files.config, **runner)
    assert first.returncode == 0, first.describe()
    server = ws.start_production_server(NAME)
    for point in MOVE_KILLS:
        version, _ = _killed_move(ws, files, point, runner, server.rest_url)
        done = ws.deploy(files.good, NAME, files.reference, config=files.config,
                         production_url=server.rest_url, **runner)
        print(f"killed at {point} (version {version}), then version {done.version} promoted", flush=True)
        with _naming(f"the complete deploy after the kill at {point} ({serving} runner)"):
            assert done.returncode == 0 and done.outcome["verdict"] == "promoted", done.describe()
            check_clean(ws, NAME)
            areas = check_history_matches_areas(ws, NAME)
            assert areas[done.version] == "production" and served_versions(server.rest_url, NAME)[-1] == done.version
            assert check_mlflow_agrees(ws, NAME) == done.outcome["registry_version"]
            _check_completed_line(ws, point, version)


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.timeout(KILL_TEST_TIMEOUT_S)
def test_kill_between_each_move_and_its_history_line_process_runner(workspace, model_files):
    run_move_kills(workspace, model_files, "process", None)


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.timeout(KILL_TEST_TIMEOUT_S)
@pytest.mark.docker
def test_kill_between_each_move_and_its_history_line_docker_runner(workspace, model_files, local_image):
    run_move_kills(workspace, model_files, "docker", local_image)
