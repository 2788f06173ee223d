"""A writer SIGKILLed between a move and its history line: recovery records the line its writer planned.

Every move of a version (stage's rename, promote, reject from staging or
production, retire, rollback) writes a write-ahead intent first. A child
process is killed at each step around the move: before it (the intent is
dropped, the version stays), after it (the planned line is appended, naming the
killed writer and its run), after the line (the intent is dropped, no second
line). After each kill and one recovery every version is in the area its
history says, nothing is left in the metadata dir, and a version whose stager
was killed is judged abandoned. A version made by hand (no intent) still gets
a ``recover`` line and is never judged abandoned.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass

import pytest

from servegate.deploy.staging import abandoned_versions
from servegate.model_store import AREAS, ModelStore
from servegate.model_store import history as history_mod
from servegate.model_store import intents as intents_mod
from servegate.model_store.layout import INTENT_PREFIX
from servegate.runtime.identity import ProcessIdentity
from tests.model_store.conftest import run_child
from tests.model_store.test_crash import Checker

RUN = "run-of-the-killed-writer"


@dataclass(frozen=True)
class Move:
    """One kind of move: how to set the store up, what the child runs, and the move it makes."""

    operation: str
    setup: tuple            # ops run by this (live) process first
    ops: list               # the child's ops
    version: int
    from_area: str | None
    to_area: str


MOVES = {
    "stage": Move("stage", (("stage",),), [["stage"]], 2, None, "staging"),
    "promote": Move("promote", (("stage",), ("promote", 1), ("stage",)), [["promote", 2]], 2, "staging",
                    "production"),
    "retire": Move("retire", (("stage",), ("promote", 1), ("stage",)), [["promote", 2]], 1, "production",
                   "rejected"),
    "reject-staged": Move("reject", (("stage",),), [["reject", 1, "bad"]], 1, "staging", "rejected"),
    "reject-served": Move("reject", (("stage",), ("promote", 1)), [["reject", 1, "undo"]], 1, "production",
                          "rejected"),
    "rollback": Move("rollback", (("stage",), ("promote", 1), ("stage",), ("promote", 2)), [["rollback"]], 2,
                     "production", "rejected"),
}
#: where the child dies: before the move, between the move and its line, after the line
WHEN = {"intent-written": "before", "renamed": "moved", "recorded": "recorded"}
CASES = [(key, point) for key in MOVES for point in WHEN]


def _setup(store: ModelStore, src, steps) -> None:
    for step in steps:
        if step[0] == "stage":
            store.stage("m", src)
        else:
            store.promote("m", step[1])


def _areas(store: ModelStore) -> dict[int, str]:
    return {v: area for area in AREAS for v in store.versions("m", area)}


def _intent_files(store: ModelStore) -> list[str]:
    return [e for e in os.listdir(store.layout.meta_dir("m")) if e.startswith(INTENT_PREFIX)]


def _kill_child_at(root, src, move: Move, point: str) -> None:
    result = run_child("die-at", {"root": str(root), "model": "m", "src": str(src), "point": point,
                                  "ops": move.ops, "retention": 1, "run_id": RUN})
    assert result.returncode == -signal.SIGKILL, f"did not die at {point}: {result.stderr}"


@pytest.mark.parametrize(("key", "when"), CASES, ids=[f"{k}-{w}" for k, w in CASES])
def test_a_kill_around_a_move_leaves_history_and_areas_in_step(root, model_src, model_digest, key, when):
    move = MOVES[key]
    store = ModelStore(root, retention=3)
    _setup(store, model_src, move.setup)
    point = f"{move.operation}:{when}"
    _kill_child_at(root, model_src, move, point)
    if WHEN[when] != "before":
        assert _areas(store)[move.version] == move.to_area  # the move was made before the kill
        assert len(_intent_files(store)) == 1

    report = store.recover("m")
    Checker(store, "m", model_digest).clean()
    assert _intent_files(store) == [], report.actions
    history = store.history("m")
    assert {r.version: r.to_area for r in history} == _areas(store), (report.actions, history)
    assert not [r for r in history if r.operation == "recover"], report.actions
    lines = [r for r in history if r.version == move.version and r.operation == move.operation]
    if WHEN[when] == "before":
        assert _areas(store).get(move.version) == move.from_area and lines == []
        return
    assert len(lines) == 1, lines  # recorded once: never again by recovery
    line = lines[0]
    assert (line.from_area, line.to_area, line.run_id) == (move.from_area, move.to_area, RUN)
    assert line.pid != os.getpid() and ProcessIdentity.from_history(line).is_dead()
    completed = line.detail.get("completed_by")
    if WHEN[when] == "moved":
        assert completed and completed["pid"] == os.getpid() and completed["operation"] == "recover"
    else:
        assert completed is None


@pytest.mark.parametrize("when", ["renamed", "recorded"])
def test_a_version_whose_stager_was_killed_after_the_rename_is_abandoned(root, model_src, when):
    """No recovery beforehand: judging abandoned versions runs it, so the killed stager is named."""
    store = ModelStore(root)
    _setup(store, model_src, MOVES["stage"].setup)
    _kill_child_at(root, model_src, MOVES["stage"], f"stage:{when}")
    abandoned = abandoned_versions(store, "m")
    assert [r.version for r in abandoned] == [2]  # version 1 was staged by this process: it lives
    assert abandoned[0].run_id == RUN and abandoned[0].pid != os.getpid()


def test_a_version_made_by_hand_gets_a_recover_line_and_is_not_abandoned(store, model_src):
    store.stage("m", model_src)
    shutil.copytree(model_src, store.base_path("staging", "m") / "7")
    report = store.recover("m")
    line = store.history("m")[-1]
    assert (line.version, line.operation, line.to_area) == (7, "recover", "staging"), report.actions
    assert "no history" in line.reason and line.pid == os.getpid()
    assert abandoned_versions(store, "m") == []


def test_a_move_that_raises_before_moving_leaves_no_intent(store, model_src, monkeypatch):
    store.stage("m", model_src)
    from servegate.model_store import transitions

    def refuse(*args, **kwargs):
        raise OSError(5, "injected before the move")

    monkeypatch.setattr(transitions, "move_version", refuse)
    with pytest.raises(Exception, match="injected"):
        store.promote("m", 1)
    assert _intent_files(store) == [] and store.versions("m", "staging") == [1]
    assert [r.operation for r in store.history("m")] == ["stage"]


def test_a_line_that_cannot_be_appended_is_completed_by_the_next_recovery(store, model_src, monkeypatch):
    store.stage("m", model_src)

    def disk_full(path, record):
        raise OSError(28, "injected: no space left for the history line")

    monkeypatch.setattr(history_mod, "append_transition", disk_full)
    with pytest.raises(Exception, match="injected"):
        store.promote("m", 1, run_id="r1")
    monkeypatch.undo()
    assert store.versions("m", "production") == [1] and len(_intent_files(store)) == 1
    store.recover("m")
    line = store.history("m")[-1]
    assert (line.operation, line.version, line.to_area, line.run_id) == ("promote", 1, "production", "r1")
    assert line.detail["completed_by"]["pid"] == os.getpid() and _intent_files(store) == []


def test_recovery_leaves_a_move_in_progress_in_this_process_alone(store, model_src, monkeypatch):
    """The lock is reentrant (and shareable with threads): a recovery run inside a move must not finish it."""
    store.stage("m", model_src)
    seen = {}

    def recover_meanwhile(point: str) -> None:
        if point == "promote:renamed":
            seen["report"] = store.recover("m")

    from servegate.model_store import fsutil

    monkeypatch.setattr(fsutil, "_checkpoint_hook", recover_meanwhile)
    store.promote("m", 1)
    assert intents_mod.pending(store.layout, "m") == intents_mod.Pending([], [], [])
    assert not seen["report"], seen["report"].actions
    assert [(r.operation, r.version) for r in store.history("m")] == [("stage", 1), ("promote", 1)]
