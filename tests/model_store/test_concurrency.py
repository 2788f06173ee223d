"""Concurrent writers in separate processes: distinct numbers, serialised promotions."""

from __future__ import annotations

import json
import time
from datetime import datetime

from servegate.model_store import ModelStore
from tests.model_store.conftest import spawn_child
from tests.model_store.treeutil import assert_complete_copy, dot_entries, version_dirs


def _start_together(procs, go_file):
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    go_file.write_text("go")
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_eight_processes_staging_at_once_get_eight_numbers(root, tmp_path, model_src, model_digest):
    go = tmp_path / "go"
    config = {"root": str(root), "model": "m", "src": str(model_src), "go_file": str(go)}
    procs = [spawn_child("stage", config) for _ in range(8)]
    versions = [r["version"] for r in _start_together(procs, go)]
    assert sorted(versions) == list(range(1, 9))
    store = ModelStore(root)
    staged = version_dirs(store.base_path("staging", "m"))
    assert sorted(staged) == list(range(1, 9))
    for path in staged.values():
        assert_complete_copy(path, model_digest)
    assert dot_entries(store.base_path("staging", "m")) == []
    records = [r for r in store.history("m") if r.operation == "stage"]
    assert sorted(r.version for r in records) == list(range(1, 9))
    assert len({r.run_id for r in records}) == 8  # eight different processes


def test_promotions_are_serialised(root, tmp_path, model_src, model_digest):
    store = ModelStore(root, retention=10)
    versions = [store.stage("m", model_src) for _ in range(8)]
    go, log = tmp_path / "go", tmp_path / "lock.log"
    procs = [spawn_child("promote", {"root": str(root), "model": "m", "version": v, "go_file": str(go),
                                     "log_file": str(log), "hold_s": 0.05, "retention": 10})
             for v in versions]
    started = time.monotonic()
    results = _start_together(procs, go)
    elapsed = time.monotonic() - started

    # Every attempt either promoted or was refused because a newer version got there first.
    ok = [r for r in results if "ok" in r]
    assert ok, results
    assert all("ok" in r or r["error"] == "NotNewerThanProduction" for r in results), results

    # The lock log: "in"/"out" strictly alternate, each pair from one process, intervals disjoint.
    events = [line.split() for line in log.read_text().splitlines()]
    assert len(events) >= 2 * len(ok)
    intervals = []
    for (kind_in, pid_in, t_in), (kind_out, pid_out, t_out) in zip(events[::2], events[1::2], strict=True):
        assert (kind_in, kind_out) == ("in", "out") and pid_in == pid_out, events
        intervals.append((float(t_in), float(t_out)))
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert end <= start
    assert elapsed >= 0.05 * len(intervals) * 0.9  # the holds (50 ms each) did not overlap

    # The history agrees: promotion records (lock taken -> recorded) never overlap.
    promos = sorted((datetime.fromisoformat(r.started.replace("Z", "+00:00")),
                     datetime.fromisoformat(r.time.replace("Z", "+00:00")))
                    for r in store.history("m") if r.operation == "promote")
    assert len(promos) == len(ok)
    for (_, end), (start, _) in zip(promos, promos[1:], strict=False):
        assert end <= start

    production = version_dirs(store.base_path("production", "m"))
    assert sorted(production) == sorted(int(r["ok"].rsplit("/", 1)[1]) for r in ok)
    for path in production.values():
        assert_complete_copy(path, model_digest)
    assert dot_entries(store.base_path("production", "m")) == []
