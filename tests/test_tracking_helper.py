"""The tracker in a helper process (servegate.tracking.helper): same records, same errors, no MLflow in the caller."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from servegate.errors import TrackingError
from servegate.tracking import Tracker
from servegate.tracking.helper import TrackerHelper
from servegate.tracking.owner import OWNER_TAG
from tests.test_tracking import _savedmodel  # the same stand-in SavedModel as the in-process tracker's tests


# A caller that never imports MLflow: runs, registry, champion and a registry lookup through the helper.
_CALLER = r'''
import json, sys
from servegate.tracking.helper import TrackerHelper
helper = TrackerHelper.launch(sys.argv[1])
run = helper.start_run("m-help", params={"rows": 3})
registered = helper.register_version(run, "m-help", sys.argv[2], serving_version=1)
champion = helper.set_champion("m-help", 1)
found = helper.find_version("m-help", 1)
helper.end_run(run, "FINISHED")
print(json.dumps({"run": run, "registry": registered.registry_version, "champion": champion,
                  "found": str(found.version), "mlflow_here": "mlflow" in sys.modules}))
'''


def test_helper_records_what_the_tracker_would_and_mlflow_stays_out_of_the_caller(tmp_path):
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", _CALLER, uri, str(_savedmodel(tmp_path))], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["mlflow_here"] is False
    assert answer["champion"] == answer["registry"] == answer["found"]
    tracker = Tracker(uri)
    run = tracker.client.get_run(answer["run"])
    assert run.info.status == "FINISHED" and run.data.params == {"rows": "3"}


def test_runs_opened_by_the_helper_name_the_caller_as_owner(tmp_path):
    """The abandoned-run rule judges the deploy's process, not its helper."""
    helper = TrackerHelper.launch(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        run = helper.start_run("m-owner")
    finally:
        helper.close()
    tags = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}").client.get_run(run).data.tags
    assert tags[OWNER_TAG].startswith(f"{os.getpid()}-")


def test_a_store_that_cannot_open_fails_the_first_call_with_the_trackers_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    helper = TrackerHelper.launch(f"sqlite:///{blocker}/sub/mlflow.db")
    try:
        with pytest.raises(TrackingError, match="file"):
            helper.start_run("m")
    finally:
        helper.close()


def test_an_error_in_a_call_comes_back_as_itself(tmp_path):
    helper = TrackerHelper.launch(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with pytest.raises(TrackingError, match="no-such-run"):
            helper.end_run("no-such-run")
        assert helper.start_run("m-after-error")  # the helper still answers
    finally:
        helper.close()


def test_a_helper_that_died_is_a_tracking_error_naming_the_uri(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    helper = TrackerHelper.launch(uri)
    helper._process.kill()
    helper._process.wait()
    with pytest.raises(TrackingError, match="tracking helper process ended") as raised:
        helper.start_run("m")
    assert raised.value.subject == uri


def test_no_store_is_created_before_open_soon_or_a_call(tmp_path):
    """The CLI starts the helper before its checks; input refused then must leave no MLflow store."""
    db = tmp_path / "mlflow.db"
    helper = TrackerHelper.launch(f"sqlite:///{db}")
    helper.close()  # waits for the helper's exit: MLflow was imported, nothing opened
    assert not db.exists()
    helper = TrackerHelper.launch(f"sqlite:///{db}")
    try:
        helper.open_soon()
        assert helper.start_run("m-soon")
    finally:
        helper.close()
    assert db.exists()


def test_a_store_that_cannot_open_after_open_soon_fails_the_next_call(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    helper = TrackerHelper.launch(f"sqlite:///{blocker}/sub/mlflow.db")
    try:
        helper.open_soon()
        with pytest.raises(TrackingError, match="file"):
            helper.start_run("m")
        with pytest.raises(TrackingError, match="file"):  # and every call after it
            helper.end_run("r")
    finally:
        helper.close()


def test_a_signal_to_the_process_group_leaves_the_helper_answering(tmp_path):
    """Ctrl-C reaches every process of the terminal's group: the CLI handles it and then records the
    cancelled attempt through the helper, which must still answer."""
    import signal
    import time

    helper = TrackerHelper.launch(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        run = helper.start_run("m-signal")
        for signum in (signal.SIGINT, signal.SIGTERM):
            helper._process.send_signal(signum)
        time.sleep(0.5)
        helper.end_run(run, "KILLED")
        assert helper.run_status(run) == "KILLED"
    finally:
        helper.close()
