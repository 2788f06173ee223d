"""The store on S3-compatible storage, on a real SeaweedFS on loopback (the tests' helper starts it):

- upload: ``ObjectModelStore.stage`` (claim, sha256 of every file, upload, manifest) against a plain
  boto3 ``upload_file`` of the same files, as throughput; goal >= 0.8x;
- download: ``download_version`` (temp dir, sha256 check, fsync, rename) against a plain boto3
  ``download_file`` of the same files; goal >= 0.8x;
- promotion to every node: seconds from the compare-and-swap of production.json until two sync
  nodes (a pass every 0.2 s each, in threads) both have the version in place; goal <= 5 s;
- deploy wall time: ``servegate deploy`` (a subprocess, a fresh HOME, TF Serving's half_plus_two) with
  ``--store s3://...`` against a local store; goal <= 1.3x.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.harness import Figure


def _version_dir(root: Path, files: int, size: int) -> Path:
    source = root / "source"
    (source / "variables").mkdir(parents=True)
    for i in range(files):
        (source / "variables" / f"shard-{i:03d}").write_bytes(os.urandom(size))
    (source / "saved_model.pb").write_bytes(os.urandom(4096))
    return source


def _plain_upload(client, bucket: str, prefix: str, source: Path) -> float:
    started = time.perf_counter()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(source).as_posix()}")
    return time.perf_counter() - started


def _plain_download(client, bucket: str, prefix: str, source: Path, target: Path) -> float:
    started = time.perf_counter()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        local = target / path.relative_to(source)
        local.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, f"{prefix}/{path.relative_to(source).as_posix()}", str(local))
    return time.perf_counter() - started


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


def _deploy_wall(root: Path, store: str, env: dict[str, str]) -> float:
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    model = repo.parent / "shared" / "tfs-testdata" / "saved_model_half_plus_two_cpu" / "00000123"
    home = root / ("home-s3" if store.startswith("s3://") else "home-local")
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


def run(quick: bool = False) -> list[Figure]:
    from servegate.object_store import ObjectModelStore, S3Location
    from servegate.object_store.download import download_version
    from tests.object_store.seaweed import start_seaweed

    files, size = (8, 4 << 20) if quick else (16, 16 << 20)
    root = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    server = start_seaweed(root / "seaweed", buckets="bench")
    try:
        client = server.client()
        source = _version_dir(root, files, size)
        store = ObjectModelStore.open(S3Location("bench", "store"), client=client)
        plain_up = _plain_upload(client, "bench", "plain", source)
        started = time.perf_counter()
        manifest = store.stage("m", source)
        ours_up = time.perf_counter() - started
        plain_down = _plain_download(client, "bench", "plain", source, root / "plain-copy")
        started = time.perf_counter()
        download_version(client, store.location, manifest, root / "ours" / str(manifest.version))
        ours_down = time.perf_counter() - started
        total = manifest.total_bytes
        to_fleet = _until_every_node(store, "m", manifest.version, root / "nodes")
        local_s = _deploy_wall(root, str(root / "local-store"), {})
        s3_s = _deploy_wall(root, "s3://bench/deploy-store", server.env())
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    mb = total / 1e6
    return [
        Figure(f"upload {mb:.0f} MB: stage vs plain boto3 (throughput)", plain_up / ours_up, 0.8, True,
               {"stage_s": round(ours_up, 3), "plain_s": round(plain_up, 3)}),
        Figure(f"download {mb:.0f} MB: verified placement vs plain boto3 (throughput)", plain_down / ours_down, 0.8,
               True, {"ours_s": round(ours_down, 3), "plain_s": round(plain_down, 3)}),
        Figure("promotion to every node (2 syncs, 0.2 s passes), seconds", to_fleet, 5.0, False,
               {"seconds": round(to_fleet, 3)}),
        Figure("deploy wall time: s3:// store vs local store", s3_s / local_s, 1.3, False,
               {"s3_s": round(s3_s, 1), "local_s": round(local_s, 1)}),
    ]
