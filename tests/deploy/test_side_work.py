"""Side work started by "validate on canary" (the report's plots and files, after a passed verdict) is
joined before "verify production": its failure fails the deploy there and the promotion is undone, in
the plain runner and in the flow alike; its success is done before "verify production" runs."""

from __future__ import annotations

import threading

import pytest

from servegate.deploy import side_work
from servegate.deploy import steps as declared
from servegate.deploy.record import AttemptRecord, DeployRequest
from tests.deploy.test_step_parity import _flow, _plain


def _steps(journal: list[str], fail: bool) -> tuple[declared.Step, ...]:
    release = threading.Event()

    def run(step: declared.Step):
        def _run(record: AttemptRecord) -> AttemptRecord:
            journal.append(f"run {step.name}")
            if step.name == "validate on canary":
                record = record.but(report_dir=f"{record.work_dir}/report")

                def draw() -> None:
                    release.wait(30)  # still drawing while the promotion runs
                    journal.append("report drawn")
                    if fail:
                        raise ValueError("no plot")
                side_work.start(record.report_dir, draw)
            if step.name == "promote version":
                release.set()
            return record
        return _run

    def undo(step: declared.Step):
        def _undo(record: AttemptRecord, reason: str) -> AttemptRecord:
            journal.append(f"undo {step.name}")
            return record
        return _undo

    return tuple(declared.Step(s.name, run(s), undo(s) if s.undo else None, preflight=s.preflight)
                 for s in declared.STEPS)


@pytest.mark.parametrize("runner", [_plain, _flow])
@pytest.mark.parametrize("fail", [True, False])
def test_the_report_drawn_beside_the_promotion_is_joined_before_verify_production(
        runner, fail, tmp_path, monkeypatch, prefect_harness):
    journal: list[str] = []
    monkeypatch.setattr(declared, "STEPS", _steps(journal, fail))
    request = DeployRequest(model_path="m.keras", name="m", reference="r.csv", store_root=str(tmp_path))
    _, error = runner(AttemptRecord(request=request, work_dir=str(tmp_path)))
    assert journal.index("run promote version") < journal.index("report drawn")
    if fail:
        assert isinstance(error, side_work.ReportError) and "ValueError: no plot" in str(error)
        assert "run verify production" not in journal
        assert journal[-2:] == ["undo promote version", "undo stage version"]
    else:
        assert error is None
        assert journal.index("report drawn") < journal.index("run verify production")
