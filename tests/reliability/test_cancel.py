"""SIGTERM and SIGINT during a deploy (what CI sends when a job is cancelled or times out).

``servegate deploy --json`` runs as a subprocess; the moment validation on the
canary is under way (the ``during_validation`` point of ``_deploy_child``, which
here only reports the moment), the test sends the signal from outside. The
deploy must roll back as for any failure, print one JSON object
(``verdict: "cancelled"``, the signal's name), exit ``128 + N``, record
"cancelled by SIGTERM" (or SIGINT) as the version's reason in the store and in
MLflow, leave production untouched and leave nothing behind. The signal is
never reported as a model error.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.reliability.harness import Workspace, check_clean

NAME = "cancelme"
POINT = "during_validation"

# Three whole deploys (one promoted, two cancelled): minutes on a busy 2-core machine.
pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _signal_at_point(ws: Workspace, model_files, signum: int):
    process = ws.start_deploy(model_files.other, NAME, model_files.reference, config=model_files.config,
                              kill_at=POINT, kill_delay_s=0.05,
                              env={**ws.env, "SERVEGATE_TEST_KILL_SIGNAL": "none"})
    deadline = time.monotonic() + 240
    while not (process.kill_log.exists() and POINT in process.kill_log.read_text()):
        assert process.proc.poll() is None, process.err_path.read_text()[-4000:]
        assert time.monotonic() < deadline, "validation never started"
        time.sleep(0.02)
    process.proc.send_signal(signum)
    return process.wait()


def _mlflow_run(ws: Workspace, run_id: str):
    from servegate.tracking import Tracker

    return Tracker(ws.tracking_uri).client.get_run(run_id)


def test_a_signal_during_validation_cancels_the_deploy(workspace, model_files):
    ws = workspace
    first = ws.deploy(model_files.good, NAME, model_files.reference, config=model_files.config)
    assert first.returncode == 0 and first.version == 1, first.describe()
    production = ws.production_snapshot(NAME)

    for version, signum in ((2, signal.SIGTERM), (3, signal.SIGINT)):
        name = signal.Signals(signum).name
        result = _signal_at_point(ws, model_files, signum)
        assert result.returncode == 128 + signum, result.describe()
        outcome = json.loads(result.stdout)  # the one JSON object, nothing else on stdout
        assert outcome["verdict"] == "cancelled" and outcome["signal"] == name, outcome
        assert outcome["reasons"] == [f"cancelled by {name}"] and outcome["version"] == version, outcome
        assert outcome["production_version"] == 1
        assert "Error" not in json.dumps(outcome["reasons"]) and "Traceback" not in result.stderr

        assert ws.production_snapshot(NAME) == production
        status = ws.model_store().status(NAME)
        assert status.serving_version == 1 and version in status.versions["rejected"], status
        assert status.rejected_reasons[version] == f"cancelled by {name}"
        run = _mlflow_run(ws, outcome["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["servegate.verdict"] == "cancelled", run.data.tags
        check_clean(ws, NAME)
        assert sorted(p.name for p in ws.tmp.glob("servegate-deploy-*")) == []
