"""When the CLI's MLflow helper starts (servegate.deploy.helper_start): once this process's children are idle,
else at the preflight's end; MLflow imports early, the store opens only when asked."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest

from servegate.deploy import helper_start, resources

BUSY = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"


def test_children_are_idle_only_when_every_child_sleeps_without_cpu():
    before = {1: ("S", 1.0), 2: ("S", 5.0)}
    assert helper_start.children_are_idle(before, {1: ("S", 1.01), 2: ("S", 5.0)})
    assert not helper_start.children_are_idle(before, {1: ("R", 1.0), 2: ("S", 5.0)})  # runnable: still starting
    assert not helper_start.children_are_idle(before, {1: ("S", 1.2), 2: ("S", 5.0)})  # used CPU in the window
    assert not helper_start.children_are_idle(before, {1: ("S", 1.0), 3: ("S", 0.0)})  # a child new in the window
    assert helper_start.children_are_idle(before, {})  # no children: nothing competes for the other core


def test_spare_cores_is_the_idle_share_of_the_machine_in_cores():
    assert helper_start.spare_cores((100, 1000), (150, 1100), 2) == 1.0  # half the ticks idle on 2 cores
    assert helper_start.spare_cores((100, 1000), (100, 1100), 2) == 0.0
    assert helper_start.spare_cores((100, 1000), (100, 1000), 2) == 0.0  # no ticks: nothing to judge


@contextlib.contextmanager
def _busy_child(uri: str):
    """A child that spins for a minute (a start still going on); ended, with any helper for ``uri``, after."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        yield busy
    finally:
        busy.kill()
        helper = resources._helpers.pop(uri, None)
        if helper is not None:
            helper.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watcher reads /proc")
def test_the_watcher_waits_for_a_busy_child_then_launches_the_helper_without_opening_the_store(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setattr(helper_start, "SPARE_CORES", 0.0)  # the machine's other work is not this test's
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    starter = helper_start.HelperStarter(uri)
    with _busy_child(uri) as busy:
        starter.start_watching()
        time.sleep(1.5)
        assert starter.launched_by is None and not resources.tracks_in_helper(uri)  # the child still starts
        busy.kill()
        busy.wait()
        deadline = time.monotonic() + 10
        while starter.launched_by is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert starter.launched_by == "watcher" and resources.tracks_in_helper(uri)
        starter.now()  # the preflight's end: no second helper
        assert starter.launched_by == "watcher"
        assert not db.exists()  # MLflow imported, nothing opened before the inputs passed
        resources.open_tracker_soon(uri)
        assert resources.tracker(uri).start_run("m-early")
        assert db.exists()


def test_the_preflights_end_launches_the_helper_when_the_watcher_did_not(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    starter = helper_start.HelperStarter(uri)
    with _busy_child(uri):
        starter.start_watching()
        time.sleep(0.6)
        starter.now()
        assert starter.launched_by == "preflight's end" and resources.tracks_in_helper(uri)


def test_a_refused_preflight_stops_the_watcher_before_it_launches(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    starter = helper_start.HelperStarter(uri)
    starter.start_watching()
    starter.stop_watching()  # the preflight refused the input before the children went idle
    time.sleep(1.0)
    assert starter.launched_by is None and not resources.tracks_in_helper(uri)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watcher reads /proc")
def test_a_machine_without_a_spare_core_keeps_the_helper_for_the_preflights_end(tmp_path, monkeypatch):
    monkeypatch.setattr(helper_start, "SPARE_CORES", 1000.0)  # more idle cores than any machine has
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    starter = helper_start.HelperStarter(uri)
    try:
        starter.start_watching()
        time.sleep(1.2)  # no busy child: only the machine's idle share holds the watcher back
        assert starter.launched_by is None and not resources.tracks_in_helper(uri)
    finally:
        starter.stop_watching()
