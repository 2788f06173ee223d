"""SIGKILL at each named step of the object store's writers and readers, against a real SeaweedFS, each
proven from the CLI (a subprocess in a brand-new HOME) that kills itself at the store's checkpoint
(``tests.reliability._deploy_child``: ``SERVEGATE_TEST_KILL_AT=store:<checkpoint>``):

- a deploy killed mid-upload (``s3-stage:file-uploaded``: a file of the version is in the bucket, no manifest);
- a deploy killed between the manifest and the promotion (``s3-promote:before-write``: published, validated,
  registered in MLflow; production.json not yet written);
- a sync killed mid-download (``s3-download:file``) and between verification and rename
  (``s3-download:verified``).

While each runs, a watcher checks continuously that nothing partial is visible: in the bucket, every
published version has all its files and production names only published versions; in the local base
path, every version directory is the complete version. After each, the next deploy or sync repairs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from servegate.object_store import ObjectModelStore
from servegate.object_store import production as p
from servegate.object_store import versions as v
from servegate.object_store.records import Claim
from servegate.object_store.sync import SyncTarget, converge, present_versions, read_heartbeats
from tests.object_store.test_cli_deploy import hp2_files  # noqa: F401 - the fixture
from tests.object_store.test_sync import matches_manifest
from tests.reliability.harness import DeployProcess, DeployResult
from tests.support.cli import REPO, fresh_env

LEASE_S = 3.0
KILLER = "tests.reliability._deploy_child"


class Watcher:
    """Runs ``check`` every ``pause_s`` (a few ms) in a thread until stopped; collects what it reports."""

    def __init__(self, check: Callable[[], list[str]], pause_s: float = 0.005) -> None:
        self.check, self.seen, self.rounds, self.pause_s = check, [], 0, pause_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen += self.check()
            self.rounds += 1
            time.sleep(self.pause_s)

    @contextmanager
    def running(self) -> Iterator[Watcher]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def bucket_partials(store: ObjectModelStore, name: str) -> list[str]:
    """What a reader could see half-made: a published version missing a file, production naming an
    unpublished version."""
    client, location = store.client, store.location
    found = []
    state, _ = p.read_production(client, location, name)  # first: what it names was published before
    published = v.list_versions(client, location, name, clean=False).published
    for version in published:
        prefix = v.files_prefix(location, name, version)
        page = client.list_objects_v2(Bucket=location.bucket, Prefix=prefix)
        have = {item["Key"][len(prefix):]: item["Size"] for item in page.get("Contents", [])}
        manifest = store.manifest(name, version)
        if manifest is not None and any(have.get(f.path) != f.size for f in manifest.files):
            found.append(f"published version {version} lacks files")
    found += [f"production serves unpublished {s}" for s in state.served if s not in published]
    return found


def base_partials(store: ObjectModelStore, name: str, base: Path) -> list[str]:
    """Every numeric directory (what TF Serving lists) must be the complete version. One renamed away
    while it was read left whole: only one still there is reported."""
    def complete(directory: Path) -> bool:
        try:
            return matches_manifest(store, name, directory)
        except FileNotFoundError:
            return False

    return [d.name for d in (base.iterdir() if base.is_dir() else [])
            if d.name.isdigit() and not complete(d) and d.exists()]


def run_killed(home: Path, env: dict[str, str], args: list[str], point: str | None,
               timeout: float = 300) -> DeployResult:
    """``servegate ARGS`` (through the killer when ``point`` is given), in its own session, waited for."""
    logs = home.parent / "logs"
    logs.mkdir(exist_ok=True)
    n = len(list(logs.glob("*.out")))
    run_env = dict(env, SERVEGATE_TEST_KILL_LOG=str(logs / f"{n}.killed"))
    if point:
        run_env["SERVEGATE_TEST_KILL_AT"] = point
    out, err = logs / f"{n}.out", logs / f"{n}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", KILLER if point else "servegate", *args], stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, cwd=home, env=run_env, start_new_session=True)
    result = DeployProcess(proc, out, err, logs / f"{n}.killed").wait(timeout)
    assert "Traceback" not in result.stderr, result.describe()
    if point:
        assert result.killed and result.kill_point == point, result.describe()
    return result


def reap_canaries(home: Path) -> None:
    from servegate.serving.runners.reap import reap_processes

    reap_processes(state_dir=home / ".servegate" / "run" / "canary-processes", all_of_model=True)


def mlflow_state(home: Path, name: str) -> tuple[str | None, list[str]]:
    """The store version MLflow's champion names, and the statuses of every run."""
    from servegate.tracking import Tracker

    tracker = Tracker(f"sqlite:///{home / '.servegate' / 'mlflow.db'}")
    champion = tracker.alias_version(name, "champion")
    runs = tracker.client.search_runs(
        [e.experiment_id for e in tracker.client.search_experiments()], max_results=100)
    return (champion.tags.get("serving_version") if champion else None), [r.info.status for r in runs]


@pytest.mark.reliability  # three deploys (one to its end): 133 s at a load of 7
def test_deploys_killed_mid_upload_and_before_promotion_leave_nothing_visible(tmp_path, seaweed, s3_location,
                                                                              hp2_files, prefect_harness):  # noqa: F811
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / "home"
    home.mkdir()
    model, reference = hp2_files
    # the session's Prefect server, as a CI job points at one: no ephemeral server started by each deploy
    env = fresh_env(home, {**seaweed.env(), "SERVEGATE_UPLOAD_LEASE_S": str(LEASE_S),
                           "PREFECT_API_URL": PREFECT_API_URL.value()})
    deploy = ["deploy", "--model", str(model), "--name", "hp2", "--reference", str(reference), "--store",
              s3_location.uri, "--json"]
    store = ObjectModelStore.open(s3_location, client=seaweed.client())
    try:
        with Watcher(lambda: bucket_partials(store, "hp2")).running() as watcher:
            run_killed(home, env, deploy, "store:s3-stage:file-uploaded")
            _check_killed_mid_upload(store)
            _wait_for_lease_of(store, 1)
            run_killed(home, env, deploy, "store:s3-promote:before-write")
            _check_killed_before_promotion(store, home)
            repaired = run_killed(home, env, deploy, None)
        assert repaired.returncode == 0 and repaired.outcome["verdict"] == "promoted", repaired.describe()
        assert watcher.seen == [] and watcher.rounds > 100, (watcher.seen, watcher.rounds)
    finally:
        reap_canaries(home)
    status = store.status("hp2", clean=False)
    assert (status.served, status.published, status.in_progress, status.next_version) == ([3], [2, 3], [], 4)
    assert store.manifest("hp2", 3).run_id == repaired.outcome["mlflow_run_id"]
    champion, runs = mlflow_state(home, "hp2")
    assert champion == "3", f"MLflow's champion names store version {champion}; production serves 3"
    assert sorted(runs) == ["FINISHED", "KILLED", "KILLED"], runs  # the killed deploys' runs ended
    node = SyncTarget("hp2", tmp_path / "node")  # a serving node follows: what the fleet serves agrees too
    assert converge(store.client, s3_location, node).present == [3]
    assert matches_manifest(store, "hp2", node.base_path / "3")


def _check_killed_mid_upload(store: ObjectModelStore) -> None:
    client, location = store.client, store.location
    assert v.list_keys(client, location, v.files_prefix(location, "hp2", 1)), "no file reached the bucket"
    assert store.manifest("hp2", 1) is None
    claim = _claim(store, 1)
    assert claim.lease_seconds == LEASE_S  # the setting reached the killed worker
    # a cleaner inside the lease leaves it alone; every reader lists it as in progress, never published
    early = v.list_versions(client, location, "hp2", clean=True, now=claim.claimed_at + LEASE_S / 2)
    assert (early.published, early.in_progress, early.cleaned) == ([], [1], [])
    assert p.read_production(client, location, "hp2")[1] is None  # production.json never written


def _wait_for_lease_of(store: ObjectModelStore, version: int) -> None:
    claim = _claim(store, version)
    time.sleep(max(0.0, claim.claimed_at + claim.lease_seconds - time.time() + 0.2))


def _claim(store: ObjectModelStore, version: int) -> Claim:
    key = v.claim_key(store.location, "hp2", version)
    return Claim.from_json(store.client.get_object(Bucket=store.location.bucket, Key=key)["Body"].read())


def _check_killed_before_promotion(store: ObjectModelStore, home: Path) -> None:
    """The next deploy after the first kill retired its upload (lease expired); this one is published,
    validated and registered, and production still serves nothing."""
    client, location = store.client, store.location
    status = store.status("hp2", clean=False)
    assert (status.published, status.served, status.in_progress) == ([2], [], [])
    tombstone = json.loads(client.get_object(Bucket=location.bucket,
                                             Key=v.manifest_key(location, "hp2", 1))["Body"].read())
    assert tombstone["abandoned"] is True
    assert v.list_keys(client, location, v.files_prefix(location, "hp2", 1)) == []
    assert p.read_production(client, location, "hp2")[1] is None
    assert converge(client, location, SyncTarget("hp2", home.parent / "node")).present == []  # a node places nothing
    champion, runs = mlflow_state(home, "hp2")
    assert champion is None, f"MLflow names store version {champion} champion; production serves nothing"
    assert sorted(runs) == ["KILLED", "RUNNING"], runs  # this deploy's run ended the first one's; its own is left


@pytest.mark.reliability  # a killed sync and its restart: 3-7 s each
@pytest.mark.parametrize("point", ["s3-download:file", "s3-download:verified"])
def test_a_sync_killed_mid_download_or_before_rename_never_lists_a_partial_version(tmp_path, seaweed, s3_store,
                                                                                   half_plus_two, point):
    base = tmp_path / "base"
    s3_store.promote("m", s3_store.stage("m", half_plus_two).version)
    assert converge(s3_store.client, s3_store.location, SyncTarget("m", base)).present == [1]  # what the node serves
    s3_store.promote("m", s3_store.stage("m", half_plus_two).version)
    home = tmp_path / "home"
    home.mkdir()
    env = fresh_env(home, seaweed.env())
    sync = ["sync", "--store", s3_store.location.uri, "--name", "m", "--base-path", str(base), "--node-id", "n1",
            "--once"]
    with Watcher(lambda: base_partials(s3_store, "m", base)).running() as watcher:
        run_killed(home, env, sync, f"store:{point}", timeout=120)
        left = [d for d in base.iterdir() if d.name.startswith(".servegate-tmp-")]
        assert present_versions(base) == [1] and len(left) == 1, sorted(d.name for d in base.iterdir())
        assert any(f.is_file() for f in left[0].rglob("*")), "the kill landed before any file was downloaded"
        restarted = run_killed(home, env, sync, None, timeout=120)
    assert restarted.returncode == 0, restarted.describe()
    assert watcher.seen == [] and watcher.rounds > 50, (watcher.seen, watcher.rounds)
    assert sorted(d.name for d in base.iterdir()) == ["2"] and matches_manifest(s3_store, "m", base / "2")
    beat = next(b for b in read_heartbeats(s3_store.client, s3_store.location) if b["node"] == "n1")
    assert beat["models"]["m"]["present"] == [2] and beat["models"]["m"]["last_error"] is None


def test_the_watchers_see_what_is_partial(s3_store, half_plus_two, tmp_path):
    """The counterparts of the kill proofs' watchers: each check reports a half-made version."""
    one = s3_store.stage("m", half_plus_two).version
    assert bucket_partials(s3_store, "m") == []
    s3_store.promote("m", one)
    assert bucket_partials(s3_store, "m") == []
    key = v.files_prefix(s3_store.location, "m", one) + "saved_model.pb"
    s3_store.client.delete_object(Bucket=s3_store.location.bucket, Key=key)
    assert bucket_partials(s3_store, "m") == [f"published version {one} lacks files"]
    state, etag = p.read_production(s3_store.client, s3_store.location, "m")
    state.served.append(7)
    s3_store.client.put_object(Bucket=s3_store.location.bucket, Key=p.production_key(s3_store.location, "m"),
                               Body=state.to_json(), IfMatch=etag)
    assert "production serves unpublished 7" in bucket_partials(s3_store, "m")

    base = tmp_path / "base"
    (base / str(one)).mkdir(parents=True)
    assert base_partials(s3_store, "m", base) == [str(one)]  # an empty directory: nothing of the version yet
    (base / ".servegate-tmp-1-x").mkdir()
    assert base_partials(s3_store, "m", base) == [str(one)]  # temporary names are not versions
