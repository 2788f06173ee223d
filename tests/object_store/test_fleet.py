"""Fleet verification from the syncs' heartbeats (real SeaweedFS): every live node must serve the new
version; one that does not is named; ``servegate status`` shows the fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servegate.deploy.verdict import ProductionVerificationError
from servegate.object_store import production as p
from servegate.object_store.fleet import fleet, wait_for_fleet
from servegate.object_store.sync import ModelReport, SyncTarget, converge, heartbeat_key, write_heartbeat
from tests.object_store.test_cli_deploy import hp2_files, run_cli  # noqa: F401 - the fixture

REPO_ROOT = Path(__file__).resolve().parents[2]


def node_pass(store, node: str, base: Path) -> None:
    """One real sync pass on a node's own directory, and its heartbeat."""
    report = converge(store.client, store.location, SyncTarget("m", base))
    write_heartbeat(store.client, store.location, node, {"m": report})


def test_every_live_node_serving_the_version_passes(s3_store, half_plus_two, tmp_path):
    s3_store.promote("m", s3_store.stage("m", half_plus_two).version)
    for node in ("a", "b"):
        node_pass(s3_store, node, tmp_path / node)
    assert wait_for_fleet(s3_store.client, s3_store.location, "m", 1, deadline_s=2) == ["a", "b"]


@pytest.mark.parametrize("serving_url, shown", [(None, 1), ("closed", None)])
def test_a_node_whose_server_does_not_answer_serves_nothing(s3_store, half_plus_two, tmp_path, closed_port_url,
                                                            serving_url, shown):
    """A pass that could not ask the node's model server reports nothing served, not what is on disk;
    without a serving URL the versions on disk are what the node serves."""
    from servegate.object_store.sync_loop import SyncOptions, one_pass

    s3_store.promote("m", s3_store.stage("m", half_plus_two).version)
    url = closed_port_url if serving_url else None
    reports = one_pass(s3_store.client, SyncOptions(s3_store.location, [SyncTarget("m", tmp_path / "n")], "n", url))
    write_heartbeat(s3_store.client, s3_store.location, "n", reports)
    assert reports["m"].present == [1] and bool(reports["m"].last_error) == bool(serving_url)
    assert reports["m"].wanted == 1  # what production serves is still said after a failed pass
    assert (reports["m"].lag_s > 0) == bool(serving_url)  # behind while its server serves nothing
    assert [v.serving for v in fleet(s3_store.client, s3_store.location, "m")] == [shown]


def test_a_node_behind_fails_by_name_and_a_dead_one_is_not_waited_for(s3_store, half_plus_two, tmp_path):
    s3_store.promote("m", s3_store.stage("m", half_plus_two).version)
    node_pass(s3_store, "a", tmp_path / "a")
    write_heartbeat(s3_store.client, s3_store.location, "b",
                    {"m": ModelReport(wanted=1, present=[], last_error="OSError: disk full")})
    with pytest.raises(ProductionVerificationError, match=r"node b serves None .*last error: OSError: disk full"):
        wait_for_fleet(s3_store.client, s3_store.location, "m", 1, deadline_s=0.5, poll_s=0.1)
    old = json.loads(s3_store.client.get_object(Bucket=s3_store.location.bucket,
                                                Key=heartbeat_key(s3_store.location, "b"))["Body"].read())
    old["time"] -= 600  # b went away ten minutes ago
    s3_store.client.put_object(Bucket=s3_store.location.bucket, Key=heartbeat_key(s3_store.location, "b"),
                               Body=json.dumps(old).encode())
    assert wait_for_fleet(s3_store.client, s3_store.location, "m", 1, deadline_s=0.5) == ["a"]
    assert [(v.node, v.live) for v in fleet(s3_store.client, s3_store.location, "m")] == [("a", True), ("b", False)]


def test_status_shows_the_fleet(s3_store, half_plus_two, tmp_path, seaweed):
    s3_store.promote("m", s3_store.stage("m", half_plus_two).version)
    node_pass(s3_store, "node-a", tmp_path / "a")
    home = tmp_path / "home"
    home.mkdir()
    shown = run_cli(home, "status", "--name", "m", "--store", s3_store.location.uri, env=seaweed.env())
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if "node-a" in line)
    assert line.split()[:4] == ["node-a", "1", "1", "0.0"] and "s ago" in line
    data = json.loads(run_cli(home, "status", "--name", "m", "--store", s3_store.location.uri, "--json",
                              env=seaweed.env()).stdout)
    assert [(n["node"], n["serving"], n["live"]) for n in data["fleet"]] == [("node-a", 1, True)]


@pytest.mark.reliability  # two deploys with a canary each
def test_a_node_that_cannot_load_the_version_fails_the_deploy_and_production_is_rolled_back(
        tmp_path, seaweed, s3_location, hp2_files, prefect_harness):  # noqa: F811 - the fixture
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / "home"
    home.mkdir()
    model, reference = hp2_files
    # The session's Prefect server: what is proven here is the fleet; each deploy starting its own
    # temporary server (a fresh HOME's path) is proven by test_cli_deploy.
    env = {**seaweed.env(), "PREFECT_API_URL": PREFECT_API_URL.value()}
    deploy = ["deploy", "--model", str(model), "--name", "m", "--reference", str(reference), "--store",
              s3_location.uri, "--json", "--force-new-version"]
    assert run_cli(home, *deploy, env=env).returncode == 0
    broken = tmp_path / "not-a-directory"
    broken.write_text("a node whose disk cannot take the version")
    node = subprocess.Popen([sys.executable, "-m", "servegate", "sync", "--store", s3_location.uri, "--name", "m",
                             "--base-path", str(broken), "--node-id", "broken-node", "--interval", "0.5"],
                            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # its first heartbeat
        result = run_cli(home, *deploy, env=env)
    finally:
        node.kill()
        node.wait()
    outcome = json.loads(result.stdout)
    assert result.returncode == 1 and outcome["verdict"] == "rolled_back", result.stderr[-3000:]
    assert "broken-node" in " ".join(outcome["reasons"])
    state, _ = p.read_production(seaweed.client(), s3_location, "m")
    assert state.serving == 1 and "2" in state.rejected
