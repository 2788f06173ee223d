"""History lines name the process that wrote them (pid, start ticks, host), so a later run can tell a
version staged by a deploy that is gone (runtime.identity's rule) from one staged by a running deploy."""

from __future__ import annotations

import json

from servegate.runtime.identity import ProcessIdentity, abandoned
from tests.model_store.conftest import run_child


def test_a_line_names_this_process_with_its_start_ticks(store, model_src):
    version = store.stage("m", model_src)
    record = store.history("m")[-1]
    assert (record.operation, record.version) == ("stage", version)
    assert ProcessIdentity.from_history(record) == ProcessIdentity.current()
    assert not abandoned(record.pid, record.host, record.ticks)
    line = json.loads(store.layout.history_file("m").read_text().splitlines()[-1])
    assert line["ticks"] == ProcessIdentity.current().start_ticks


def test_a_version_staged_by_an_ended_process_is_abandoned(store, root, model_src):
    done = run_child("stage", {"root": str(root), "model": "m", "src": str(model_src)})
    assert done.returncode == 0, done.stderr
    record = store.history("m")[-1]
    assert record.operation == "stage" and record.ticks is not None
    assert abandoned(record.pid, record.host, record.ticks)
    assert ProcessIdentity.from_history(record).is_dead()
