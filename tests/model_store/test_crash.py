"""Crash safety: SIGKILL a child that stages and promotes, at random moments and at every step.

After each kill, before any repair, every version directory in every area (and
so every directory in production/) is a complete SavedModel byte-identical to
its source; the next operation leaves no temp dirs, no stale lock and no stale
holder file behind.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import select
import signal
import time

import pytest

from servegate.model_store import AREAS, ModelStore
from servegate.model_store.locking import lock_is_held
from servegate.model_store.savedmodel import check_savedmodel
from tests.model_store.conftest import run_child, spawn_child
from tests.model_store.treeutil import dot_entries, version_dirs

KILLS = 60  # at least 50 (issue 2)


class Checker:
    """Checks every version directory once per inode (a rename keeps the inode; a copy gets a new one)."""

    def __init__(self, store: ModelStore, name: str, digest: str):
        self.store, self.name, self.digest = store, name, digest
        self.verified: set[tuple[int, int]] = set()

    def versions_complete(self) -> dict[str, list[int]]:
        from servegate.model_store import fsutil

        found = {}
        for area in AREAS:
            dirs = version_dirs(self.store.base_path(area, self.name))
            for path in dirs.values():
                st = os.stat(path)
                key = (st.st_dev, st.st_ino)
                if key in self.verified:
                    continue
                check_savedmodel(path)
                assert fsutil.tree_digest(path) == self.digest, f"{path} is not byte-identical to its source"
                self.verified.add(key)
            found[area] = sorted(dirs)
        # a number is in one area at most, except in the window of a cross-filesystem move
        return found

    def clean(self) -> None:
        """No temp entries, no stale lock or holder file, no dead in-flight markers."""
        layout = self.store.layout
        for area in AREAS:
            assert dot_entries(self.store.base_path(area, self.name)) == [], area
        assert not lock_is_held(layout.lock_file(self.name))
        assert not layout.holder_file(self.name).exists()
        assert [e for e in os.listdir(layout.meta_dir(self.name)) if e.startswith(".")] == []
        inflight = layout.inflight_dir(self.name)
        assert not inflight.exists() or os.listdir(inflight) == []
        rejected = self.store.base_path("rejected", self.name)
        if rejected.is_dir():
            reasons = {e.split(".", 1)[0] for e in os.listdir(rejected) if e.endswith(".reason.json")}
            assert reasons <= {e for e in os.listdir(rejected) if e.isdigit()}


def _read_ready(proc, timeout: float = 30.0) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "child did not start"
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")


def _crash_loop(root, tmp_path, model_src, model_digest, kills: int, areas=None):
    name = "m"
    store = ModelStore(root, retention=3, areas=areas)
    checker = Checker(store, name, model_digest)
    progress = tmp_path / "progress"
    rng = random.Random(2024)
    hit = collections.Counter()
    started = time.monotonic()
    for i in range(kills):
        proc = spawn_child("crash-loop", {"root": str(root), "model": name, "src": str(model_src),
                                          "seed": i, "progress_file": str(progress), "areas": areas,
                                          "jitter_s": 0.003})
        delay = rng.uniform(0.01, 0.25)
        try:
            _read_ready(proc)
            time.sleep(delay)
            assert proc.poll() is None, proc.stderr.read()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        last = progress.read_bytes().decode().strip() if progress.exists() else "(none)"
        hit[last] += 1
        with _naming(f"kill {i + 1} of {kills}, {delay:.3f} s after the child was ready, last step {last}"):
            _check_after_kill(store, checker, name, model_src, i)

    # Numbers: every staged number is unique, and none was handed out twice.
    staged = [r.version for r in store.history(name) if r.operation == "stage"]
    assert len(staged) == len(set(staged))
    elapsed = time.monotonic() - started
    return hit, elapsed


@contextlib.contextmanager
def _naming(context: str):
    """A failed check names the kill before it (its moment and the last step the child reached)."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"after {context}: {exc}") from exc


def _check_after_kill(store: ModelStore, checker: Checker, name: str, model_src, i: int) -> None:
    """Complete versions only before repair; after the next operation nothing left, history and areas agree."""
    # Before any repair: only complete versions are visible anywhere.
    checker.versions_complete()

    # The next operation (it runs recovery first) leaves nothing behind.
    step = i % 3
    if step == 0:
        store.stage(name, model_src)
    elif step == 1:
        staged = store.versions(name, "staging")
        if staged and (not store.versions(name, "production")
                       or staged[-1] > store.versions(name, "production")[-1]):
            store.promote(name, staged[-1])
        else:
            store.recover(name)
    else:
        store.recover(name)
    checker.clean()
    found = checker.versions_complete()
    everywhere = [v for area in AREAS for v in found[area]]
    assert len(everywhere) == len(set(everywhere)), f"a version is in two areas after recovery: {found}"
    history = store.history(name)
    assert {r.version: r.to_area for r in history} == {v: a for a in AREAS for v in found[a]}
    assert not [r for r in history if r.operation == "recover"], "a move recorded without its writer"


@pytest.mark.reliability  # a long proof: SIGKILLs at random moments, one child process each
def test_sigkill_at_random_moments(root, tmp_path, model_src, model_digest):
    hit, elapsed = _crash_loop(root, tmp_path, model_src, model_digest, KILLS)
    print(f"{KILLS} kills in {elapsed:.1f} s; last step before each kill: {dict(hit)}")
    ops = {point.split(":")[0] for point in hit}
    assert sum(hit.values()) >= 50
    # The kills landed inside the operations, in several different steps.
    assert {"copy", "stage"} & ops and ({"promote", "retire"} & ops or "op" in ops), hit
    assert len(hit) >= 5, hit


@pytest.mark.reliability  # as above, production on another filesystem
def test_sigkill_at_random_moments_across_filesystems(root, tmp_path, other_fs, model_src, model_digest):
    hit, elapsed = _crash_loop(root, tmp_path, model_src, model_digest, 20,
                           areas={"production": str(other_fs / "production")})
    print(f"20 kills (production on another filesystem) in {elapsed:.1f} s: {dict(hit)}")


# Every step of stage and promote (and of the moves out of production), one kill each.
STAGE_POINTS = ["lock:acquired", "write-atomic:before-rename", "stage:counter-written", "stage:tmp-created",
                "copy:file", "copy:done", "stage:copied", "stage:renamed", "stage:recorded", "lock:releasing"]
PROMOTE_POINTS = ["lock:acquired", "recover:done", "promote:before-rename", "promote:renamed",
                  "promote:recorded", "retire:reason-written", "retire:renamed", "retire:recorded",
                  "lock:releasing"]
CROSS_FS_PROMOTE_POINTS = ["promote:tmp-created", "copy:file", "copy:done", "promote:source-hidden",
                           "retire:tmp-created"]


def _die_at(root, model_src, point: str, ops, areas=None, nth: int = 1):
    result = run_child("die-at", {"root": str(root), "model": "m", "src": str(model_src), "point": point,
                                  "nth": nth, "ops": ops, "areas": areas, "retention": 1})
    assert result.returncode == -signal.SIGKILL, f"did not die at {point}: {result.stderr}"


@pytest.mark.parametrize("point", STAGE_POINTS)
def test_kill_at_each_step_of_stage(root, model_src, model_digest, point):
    store = ModelStore(root)
    store.stage("m", model_src)  # 1
    _die_at(root, model_src, point, [["stage"]])
    checker = Checker(store, "m", model_digest)
    checker.versions_complete()
    staged_before_repair = store.versions("m", "staging")
    assert staged_before_repair in ([1], [1, 2])
    v = store.stage("m", model_src)
    checker.clean()
    checker.versions_complete()
    # the killed stage's number (2) is never handed out again, whether or not it got in
    assert v == 3 if point not in ("lock:acquired", "write-atomic:before-rename") else v in (2, 3)
    if 2 in staged_before_repair:
        assert store.versions("m", "staging") == [1, 2, 3]
        assert [r.version for r in store.history("m") if r.to_area == "staging"].count(2) == 1


def _check_promote_outcome(store, checker, point, renamed_points):
    checker.versions_complete()
    production = store.versions("m", "production")
    # Production is as it was (1) or fully promoted (2): never in between.
    assert production in ([1], [1, 2], [2]), production
    store.recover("m")
    checker.clean()
    found = checker.versions_complete()
    if point in renamed_points:
        assert 2 in found["production"]
    else:
        assert found["production"] == [1] and found["staging"] == [2]
    everywhere = [v for area in AREAS for v in found[area]]
    assert sorted(everywhere) == [1, 2]
    last = {r.version: r.to_area for r in store.history("m")}
    assert last == {v: area for area in AREAS for v in found[area]}  # history caught up with the areas


@pytest.mark.parametrize("point", PROMOTE_POINTS)
def test_kill_at_each_step_of_promote(root, model_src, model_digest, point):
    store = ModelStore(root, retention=1)
    store.promote("m", store.stage("m", model_src))
    store.stage("m", model_src)
    _die_at(root, model_src, point, [["promote", 2]])
    renamed = set(PROMOTE_POINTS[PROMOTE_POINTS.index("promote:renamed"):])
    _check_promote_outcome(store, Checker(store, "m", model_digest), point, renamed)


@pytest.mark.parametrize("point", ["promote:before-rename", *CROSS_FS_PROMOTE_POINTS, "promote:renamed",
                                   "retire:renamed", "retire:source-hidden"])
def test_kill_at_each_step_of_a_cross_filesystem_promote(root, other_fs, model_src, model_digest, point):
    areas = {"production": str(other_fs / "production")}
    store = ModelStore(root, retention=1, areas=areas)
    store.promote("m", store.stage("m", model_src))
    store.stage("m", model_src)
    nth = 2 if point == "copy:file" else 1  # in the middle of the copy
    _die_at(root, model_src, point, [["promote", 2]], areas=areas, nth=nth)
    renamed = {"promote:renamed", "promote:source-hidden", "retire:tmp-created", "retire:renamed",
               "retire:source-hidden"}
    if point == "copy:file" or point == "copy:done":
        renamed = set()
    _check_promote_outcome(store, Checker(store, "m", model_digest), point, renamed)
