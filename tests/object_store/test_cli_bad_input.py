"""Bad object-store locations through the CLI (a subprocess, a brand-new HOME) against a real SeaweedFS:
exit 2, the last stderr line names what is wrong and what to do, and nothing is created anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servegate.object_store import ObjectModelStore, S3Location
from servegate.object_store import versions as v
from tests.object_store.conftest import BUCKET
from tests.object_store.ignoring_proxy import start_ignoring_proxy
from tests.object_store.seaweed import READER

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full = {k: val for k, val in os.environ.items()
            if not k.startswith(("AWS_", "PREFECT_API", "MLFLOW_", "SERVEGATE_"))}
    full.update(HOME=str(home), PYTHONPATH=str(REPO_ROOT), PREFECT_SERVER_ANALYTICS_ENABLED="false", **env)
    return subprocess.run([sys.executable, "-m", "servegate", *args], capture_output=True, text=True, env=full,
                          cwd=tmp_path, timeout=120)


def refused(result: subprocess.CompletedProcess, tmp_path: Path, *words: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last
    assert list((tmp_path / "home").iterdir()) == []
    assert not (tmp_path / "s3:").exists()
    return last


def keys_under(seaweed, location: S3Location) -> list[str]:
    return v.list_keys(seaweed.client(), location, location.prefix + "/")


def status(tmp_path, uri, env, *extra):
    return run_cli(tmp_path, "status", "--name", "m", "--store", uri, *extra, env=env)


def test_a_bucket_that_does_not_exist(tmp_path, seaweed):
    result = status(tmp_path, "s3://no-such-bucket/store", seaweed.env())
    refused(result, tmp_path, "bucket 'no-such-bucket' does not exist", "create it first")


def test_missing_credentials(tmp_path, seaweed, s3_location):
    result = status(tmp_path, s3_location.uri, {"AWS_ENDPOINT_URL": seaweed.endpoint,
                                                "AWS_EC2_METADATA_DISABLED": "true"})
    refused(result, tmp_path, "no AWS credentials found", "AWS_ACCESS_KEY_ID")


def test_access_denied(tmp_path, seaweed, s3_location):
    result = status(tmp_path, s3_location.uri, seaweed.env(READER), "--json")
    refused(result, tmp_path, "access denied", "allowed to read, write and delete")
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "AccessDenied" and error["subject"] == "--store"
    assert keys_under(seaweed, s3_location) == []


def test_an_unreachable_endpoint(tmp_path, seaweed, s3_location):
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    refused(status(tmp_path, s3_location.uri, env), tmp_path, "http://127.0.0.1:9 did not answer",
            "set AWS_ENDPOINT_URL")


def test_a_prefix_inside_another_store(tmp_path, seaweed, s3_location, half_plus_two):
    ObjectModelStore.open(s3_location, client=seaweed.client()).stage("m", half_plus_two)
    before = keys_under(seaweed, s3_location)
    inner = s3_location.uri + "/models/m"
    refused(status(tmp_path, inner, seaweed.env()), tmp_path, f"inside the store {s3_location.uri}")
    assert keys_under(seaweed, s3_location) == before


def test_an_object_store_without_conditional_writes(tmp_path, seaweed, s3_location):
    proxy, endpoint = start_ignoring_proxy(seaweed.endpoint)
    try:
        result = status(tmp_path, s3_location.uri, {**seaweed.env(), "AWS_ENDPOINT_URL": endpoint})
    finally:
        proxy.shutdown()
    refused(result, tmp_path, "ignored a create-only write (If-None-Match: *)", "use a store that honours them")
    assert keys_under(seaweed, s3_location) == []


def test_the_same_store_through_the_real_server_is_accepted(tmp_path, seaweed, s3_location, half_plus_two):
    """The counterpart: good settings open the store, and status reads what a stage published."""
    ObjectModelStore.open(s3_location, client=seaweed.client()).stage("m", half_plus_two)
    result = status(tmp_path, s3_location.uri, seaweed.env(), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["published"] == [1]


@pytest.mark.parametrize("uri, words", [("s3://Bad_Bucket/x", "is not a valid S3 bucket name"),
                                        ("s3://bucket/a/../b", "has an empty, '.' or '..' part")])
def test_a_malformed_uri_is_refused_without_the_network(tmp_path, uri, words):
    refused(status(tmp_path, uri, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}), tmp_path, words)


def test_the_variable_is_named_when_the_store_comes_from_it(tmp_path, seaweed):
    result = run_cli(tmp_path, "status", "--name", "m", env={**seaweed.env(), "SERVEGATE_STORE": "s3://no-such-bucket/s"})
    refused(result, tmp_path, "SERVEGATE_STORE s3://no-such-bucket/s", "does not exist")


def test_an_upload_lease_that_is_not_a_number_is_refused(tmp_path, seaweed, s3_location):
    result = status(tmp_path, s3_location.uri, {**seaweed.env(), "SERVEGATE_UPLOAD_LEASE_S": "an hour"})
    refused(result, tmp_path, "SERVEGATE_UPLOAD_LEASE_S: found 'an hour'", "expected a number of seconds")
    assert keys_under(seaweed, s3_location) == []
