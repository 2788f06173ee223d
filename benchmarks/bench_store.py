"""Promotion cost does not grow with the model: promote a 1 GB version vs a 10 MB version.

Both versions are real SavedModels (TF Serving's half_plus_two, or a minimal
synthetic one when its test data is absent) padded with one large asset file,
staged into the same store on the same filesystem. Only ``store.promote`` is
timed (``perf_counter``), after ``os.sync()`` so that neither promotion pays
for the other's writes. Promotion is a rename plus a few fsyncs of small
files and directories, so the ratio should be near 1 (goal: <= 1.5).

``--quick`` uses 100 MB instead of 1 GB. Set ``SERVEGATE_BENCH_DIR`` to
measure on another filesystem (default: the system temp dir). Everything is
removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure

MB = 1024 * 1024
SMALL = 10 * MB
BIG = 1024 * MB
BIG_QUICK = 100 * MB
REPEATS = 5
GOAL = 1.5

_TFS_TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "tfs-testdata"


def _base_savedmodel(path: Path) -> None:
    """A SavedModel to pad: TF Serving's half_plus_two, or a minimal one (no TensorFlow needed)."""
    testdata = Path(os.environ.get("SERVEGATE_TFS_TESTDATA") or _TFS_TESTDATA)
    source = testdata / "saved_model_half_plus_two_cpu" / "00000123"
    if source.is_dir():
        shutil.copytree(source, path)
        return
    from servegate.model_store.savedmodel import _classes

    saved = _classes()["SavedModel"]()
    saved.saved_model_schema_version = 1
    meta = saved.meta_graphs.add()
    meta.meta_info_def.tags.append("serve")
    sig = meta.signature_def["serving_default"]
    sig.method_name = "tensorflow/serving/predict"
    sig.inputs["x"].name = "x:0"
    sig.outputs["y"].name = "y:0"
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(saved.SerializeToString())
    (path / "variables").mkdir()
    (path / "variables" / "variables.index").write_bytes(b"\0" * 64)
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 64)


def _make_source(path: Path, size: int) -> Path:
    _base_savedmodel(path)
    block = os.urandom(MB)
    (path / "assets").mkdir(exist_ok=True)
    with open(path / "assets" / "padding.bin", "wb") as fh:
        for _ in range(size // MB):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _timed_promote(store, name: str, version: int) -> float:
    os.sync()
    started = time.perf_counter()
    store.promote(name, version)
    return time.perf_counter() - started


def run(quick: bool = False) -> list[Figure]:
    from servegate.model_store import ModelStore

    big = BIG_QUICK if quick else BIG
    parent = os.environ.get("SERVEGATE_BENCH_DIR") or tempfile.gettempdir()
    free = shutil.disk_usage(parent).free
    if free < 3 * big + 4 * SMALL:
        raise SystemExit(f"bench_store needs about {3 * (big + SMALL) // MB} MB free in {parent}; "
                         f"{free // MB} MB free (set SERVEGATE_BENCH_DIR)")
    work = Path(tempfile.mkdtemp(prefix="servegate-bench-store-", dir=parent))
    try:
        small_src = _make_source(work / "src-small", SMALL)
        big_src = _make_source(work / "src-big", big)
        store = ModelStore(work / "store", retention=REPEATS + 1)
        small_times, big_times = [], []
        for rep in range(REPEATS):
            v_small = store.stage("small", small_src)
            v_big = store.stage("big", big_src)
            # alternate the order, so that neither size always goes first
            if rep % 2 == 0:
                small_times.append(_timed_promote(store, "small", v_small))
                big_times.append(_timed_promote(store, "big", v_big))
            else:
                big_times.append(_timed_promote(store, "big", v_big))
                small_times.append(_timed_promote(store, "small", v_small))
            # keep the disk footprint at one big version
            shutil.rmtree(store.version_path("production", "big", v_big))
        ratio = statistics.median(big_times) / statistics.median(small_times)
        return [Figure(
            name=f"promote {big // MB} MB vs {SMALL // MB} MB version",
            ratio=ratio,
            goal=GOAL,
            detail={
                "big_bytes": big, "small_bytes": SMALL, "repeats": REPEATS,
                "promote_big_s": big_times, "promote_small_s": small_times,
                "median_big_s": statistics.median(big_times), "median_small_s": statistics.median(small_times),
                "directory": str(work),
            },
        )]
    finally:
        shutil.rmtree(work, ignore_errors=True)
