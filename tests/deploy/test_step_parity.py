"""The deploy is declared once: the plain runner and the Prefect flow run the same steps in the
same order, and undo the same steps in the same (reverse) order after a failure at each step.

The steps are replaced by recorders at one narrow seam (``servegate.deploy.steps.STEPS``): this
test is about the runners, not the steps (the flow and CLI tests run the real ones).
"""

from __future__ import annotations

import pytest

from servegate.deploy import steps as declared
from servegate.deploy.record import AttemptRecord, DeployRequest


def _recording_steps(journal: list[str], fail_at: str | None, verdict: bool) -> tuple[declared.Step, ...]:
    from servegate.deploy.verdict import ModelRejected

    def run(step: declared.Step):
        def _run(record: AttemptRecord) -> AttemptRecord:
            journal.append(f"run {step.name}")
            if step.name == fail_at:
                raise ModelRejected("judged", ["check: failed"]) if verdict else RuntimeError(f"{step.name} broke")
            return record.but(timings={**record.timings, step.key: 0.0})
        return _run

    def undo(step: declared.Step):
        def _undo(record: AttemptRecord, reason: str) -> AttemptRecord:
            journal.append(f"undo {step.name}: {reason}")
            return record
        return _undo

    return tuple(declared.Step(s.name, run(s), undo(s) if s.undo else None, preflight=s.preflight)
                 for s in declared.STEPS)


def _record(tmp_path) -> AttemptRecord:
    request = DeployRequest(model_path="m.keras", name="m", reference="r.csv", store_root=str(tmp_path))
    return AttemptRecord(request=request, work_dir=str(tmp_path))


def _plain(record: AttemptRecord):
    from servegate.deploy.plain import run_steps

    return run_steps(record)


def _flow(record: AttemptRecord):
    from prefect import flow

    from servegate.flows.deploy import run_steps

    @flow(name="step-parity")
    def parity():
        return run_steps(record)

    return parity()


CASES = [(None, False)] + [(s.name, False) for s in declared.STEPS] + [
    ("validate on canary", True), ("verify production", True)]  # a verdict is undone like an error


@pytest.mark.parametrize(("fail_at", "verdict"), CASES)
def test_plain_runner_and_flow_run_and_undo_the_same_steps(fail_at, verdict, tmp_path, monkeypatch, prefect_harness):
    journals = {}
    for runner in (_plain, _flow):
        journal: list[str] = []
        monkeypatch.setattr(declared, "STEPS", _recording_steps(journal, fail_at, verdict))
        work = tmp_path / runner.__name__
        work.mkdir()
        _, error = runner(_record(work))
        assert (error is None) == (fail_at is None)
        journals[runner.__name__] = journal
    assert journals["_plain"] == journals["_flow"]
    ran = [line for line in journals["_plain"] if line.startswith("run ")]
    names = [s.name for s in declared.STEPS]
    assert ran == [f"run {n}" for n in names[: names.index(fail_at) + 1 if fail_at else len(names)]]
    undone = [line.split(":")[0] for line in journals["_plain"] if line.startswith("undo ")]
    if fail_at is not None:
        done = names[: names.index(fail_at)]
        with_undo = [s.name for s in declared.STEPS if s.undo and s.name in done]
        assert undone == [f"undo {n}" for n in reversed(with_undo)]
