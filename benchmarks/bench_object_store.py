"""The store on S3-compatible storage, on a real SeaweedFS on loopback (the tests' helper starts it):

- upload: ``ObjectModelStore.stage`` (claim, sha256 of every file, upload, manifest) against a plain
  boto3 ``upload_file`` of the same files, one after another, as throughput; goal >= 0.8x;
- download: ``download_version`` (temp dir, sha256 of the bytes as they arrive, fsync of every file and
  directory, rename) against a plain boto3 ``download_file`` of the same objects (the version's own
  keys), one after another; goal >= 0.8x;
- promotion to every node: seconds from the compare-and-swap of production.json until two sync
  nodes (a pass every 0.2 s each, in threads) both have the version in place; goal <= 5 s;
- deploy wall time: ``servegate deploy`` (a subprocess, a fresh HOME, TF Serving's half_plus_two) with
  ``--store s3://...`` against a local store, each a first deploy into a store of its own, in rounds
  like the throughputs (3, after an untimed one; 1 with ``--quick``); goal <= 1.3x.

The version is shaped like a real SavedModel's: one large ``variables.data`` file (48 MiB, fetched in
ranged parts), ``variables.index``, ``saved_model.pb`` and 40 small asset files: 56 MB (53.5 MiB).

Upload and download are timed in rounds (5; 1 with ``--quick``), the two sides taking turns (ours then
boto3, then boto3 then ours, ...); a figure is the median of the per-round ratios (boto3's seconds / ours),
each round's ratio in the detail. The page cache is warm for both and dropped for neither: an untimed run
of each side first reads the source files and SeaweedFS's volume files into it, and both sides read the
same bytes. ``os.sync()`` (untimed) before each timed run writes back what the previous run left dirty, so
neither side pays for the other's writeback; ours still pays for its own fsyncs, which are its promise.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from benchmarks.harness import Figure

ROUNDS = 5
DEPLOY_ROUNDS = 3  # a deploy takes 10-20 s a side


def _version_dir(root: Path) -> Path:
    """56 MB shaped like a SavedModel: one large variables file, its index, the graph, 40 assets."""
    source = root / "source"
    (source / "variables").mkdir(parents=True)
    (source / "assets").mkdir()
    (source / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(48 << 20))
    (source / "variables" / "variables.index").write_bytes(os.urandom(16 << 10))
    (source / "saved_model.pb").write_bytes(os.urandom(512 << 10))
    for i in range(40):
        (source / "assets" / f"vocab-{i:03d}.txt").write_bytes(os.urandom(128 << 10))
    return source


def _files(source: Path) -> list[str]:
    return sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())


def _plain_upload(client, bucket: str, prefix: str, source: Path) -> None:
    for relative in _files(source):
        client.upload_file(str(source / relative), bucket, f"{prefix}/{relative}")


def _plain_download(client, bucket: str, prefix: str, files: list[str], target: Path) -> None:
    for relative in files:
        local = target / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, prefix + relative, str(local))


def _timed(run: Callable[[], None]) -> float:
    os.sync()  # what the previous run left dirty is written back before, not during, this one
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _turns(ours: Callable[[int], float], plain: Callable[[int], float], rounds: int,
           cleanup: Callable[[], None] = lambda: None) -> tuple[list[float], list[float]]:
    """``rounds`` rounds, the two sides taking turns (ours first in even rounds); each side returns its
    seconds. Returns (ours, plain) seconds."""
    ours_s, plain_s = [], []
    for i in range(rounds):
        for side in ((ours, plain) if i % 2 == 0 else (plain, ours)):
            (ours_s if side is ours else plain_s).append(side(i))
        cleanup()
    return ours_s, plain_s


def _rounds(ours: Callable[[int], None], plain: Callable[[int], None], rounds: int,
            cleanup: Callable[[], None] = lambda: None) -> dict:
    """Each side once untimed (a warm page cache for both), then ``rounds`` rounds in turns."""
    ours(-1)
    plain(-1)
    cleanup()
    ours_s, plain_s = _turns(lambda i: _timed(lambda: ours(i)), lambda i: _timed(lambda: plain(i)), rounds,
                             cleanup)
    ratios = [p / o for p, o in zip(plain_s, ours_s)]
    return {"ratio": statistics.median(ratios), "round_ratios": [round(r, 2) for r in ratios],
            "ours_s": [round(s, 3) for s in ours_s], "plain_s": [round(s, 3) for s in plain_s]}


def _throughput(client, store, source: Path, root: Path, rounds: int) -> tuple[dict, dict, object]:
    """Upload rounds (ours: a new version each), then download rounds of the last version."""
    from servegate.object_store.download import download_version
    from servegate.object_store.versions import files_prefix

    manifests = []
    up = _rounds(lambda i: manifests.append(store.stage("m", source)),
                 lambda i: _plain_upload(client, "bench", f"plain/{i + 1}", source), rounds)
    manifest = manifests[-1]
    prefix, files = files_prefix(store.location, "m", manifest.version), [f.path for f in manifest.files]
    copies = root / "copies"

    def ours(i: int) -> None:
        download_version(client, store.location, manifest, copies / f"ours-{i + 1}" / str(manifest.version))

    def plain(i: int) -> None:
        _plain_download(client, "bench", prefix, files, copies / f"plain-{i + 1}")

    down = _rounds(ours, plain, rounds, cleanup=lambda: shutil.rmtree(copies, ignore_errors=True))
    return up, down, manifest


def _until_every_node(store, name: str, version: int, root: Path, nodes: int = 2) -> float:
    from servegate.object_store.sync import SyncTarget, converge, present_versions

    stop, done = threading.Event(), {}

    def node(index: int) -> None:
        target = SyncTarget(name, root / f"node-{index}")
        while not stop.is_set():
            converge(store.client, store.location, target)
            if version in present_versions(target.base_path) and index not in done:
                done[index] = time.perf_counter()
            time.sleep(0.2)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(nodes)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    store.promote(name, version)
    while len(done) < nodes and time.perf_counter() - started < 60:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    return max(done.values()) - started if len(done) == nodes else float("inf")


def _deploy_wall(root: Path, store: str, env: dict[str, str], run_id: str) -> float:
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    model = repo.parent / "shared" / "tfs-testdata" / "saved_model_half_plus_two_cpu" / "00000123"
    home = root / f"home-{run_id}"
    home.mkdir()
    reference = root / "hp2.parquet"
    x = np.linspace(0, 1, 16, dtype="float32")
    pd.DataFrame({"x": x, "label": 0.5 * x + 2}).to_parquet(reference)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEGATE_", "MLFLOW_", "PREFECT_API"))}
    full.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PYTHONPATH=str(repo), **env)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "servegate", "deploy", "--model", str(model), "--name", "hp2",
                           "--reference", str(reference), "--store", store, "--json"], env=full,
                          capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"deploy to {store} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def _deploy_rounds(root: Path, s3_env: dict[str, str], rounds: int) -> dict:
    """First deploys of the same model, each into a store and HOME of its own (the same work on both
    sides), the two sides taking turns after one untimed deploy (a warm page cache for both); the median
    of the per-round ratios (s3 / local)."""
    _deploy_wall(root, str(root / "local-store-warm"), {}, "warm")
    local_s, s3_s = _turns(lambda i: _deploy_wall(root, str(root / f"local-store-{i}"), {}, f"local-{i}"),
                           lambda i: _deploy_wall(root, f"s3://bench/deploy-store-{i}", s3_env, f"s3-{i}"),
                           rounds)
    ratios = [s / loc for s, loc in zip(s3_s, local_s)]
    return {"ratio": statistics.median(ratios), "round_ratios": [round(r, 2) for r in ratios],
            "s3_s": [round(s, 1) for s in s3_s], "local_s": [round(s, 1) for s in local_s]}


def run(quick: bool = False) -> list[Figure]:
    from servegate.object_store import ObjectModelStore, S3Location
    from tests.object_store.seaweed import start_seaweed

    rounds = 1 if quick else ROUNDS
    root = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    server = start_seaweed(root / "seaweed", buckets="bench")
    try:
        client = server.client()
        source = _version_dir(root)
        store = ObjectModelStore.open(S3Location("bench", "store"), client=client)
        load_before = os.getloadavg()
        up, down, manifest = _throughput(client, store, source, root, rounds)
        load = {"load_average_before": load_before, "load_average_after": os.getloadavg()}
        total, count = manifest.total_bytes, len(manifest.files)
        to_fleet = _until_every_node(store, "m", manifest.version, root / "nodes")
        walls = _deploy_rounds(root, server.env(), min(rounds, DEPLOY_ROUNDS))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    mb = total / 1e6
    print(f"# upload {mb:.0f} MB in {count} files: {up}; download: {down}; load {load}", flush=True)
    return [
        Figure(f"upload {mb:.0f} MB/{count} files: stage vs plain boto3 (thr.)", up["ratio"], 0.8, True,
               {**up, **load, "mb": round(mb, 1), "files": count}),
        Figure(f"download {mb:.0f} MB/{count} files: verified vs plain boto3 (thr.)", down["ratio"], 0.8, True,
               {**down, **load, "mb": round(mb, 1), "files": count}),
        Figure("promotion to every node (2 syncs, 0.2 s passes), seconds", to_fleet, 5.0, False,
               {"seconds": round(to_fleet, 3)}),
        Figure("deploy wall time: s3:// store vs local store", walls["ratio"], 1.3, False, walls),
    ]
