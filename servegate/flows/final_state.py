"""How a deploy flow run ends: Completed with the outcome, or Failed with the verdict and reasons as its message.

A rejection (or a rollback after production verification failed or a bake
alarm) is an expected outcome, not a crash: the run ends Failed, so that
``prefect deployment run --watch`` exits non-zero, and its message starts
with the verdict ("Rejected: <reasons>", "Rolled back: <reasons>"): the
run's state message (and its log's last line, "Finished in state ..."), and
what :mod:`servegate.flows.engine` exits 0 for. The state keeps Prefect's own name
``Failed``: the UI's default filters (a deployment's Runs tab, the "Hide
scheduled runs" view) select runs by state *name* from Prefect's fixed list
of names, and a run in a state named anything else ("Rejected") is hidden
there. The state's data is the verdict exception with the outcome dict as its
``outcome`` attribute, for in-process callers such as the CLI. An error is
raised as it is.
"""

from __future__ import annotations

from typing import Any

from prefect.states import Cancelled, Failed

from servegate.deploy.record import DeployOutcome
from servegate.deploy.verdict import Verdict

#: The first words of a verdict's Failed message, per verdict (from :attr:`Verdict.final_state`).
VERDICT_LABELS = {v.value: v.final_state[1] for v in Verdict if v.final_state[1] is not None}


def verdict_message(verdict: str, reasons: list[str]) -> str:
    return f"{VERDICT_LABELS[verdict]}: " + ("; ".join(reasons) or "no reason recorded")


def is_verdict(state: Any) -> bool:
    """A Failed state that a servegate flow ended in because it judged (not a crash, not an error)."""
    message = getattr(state, "message", None) or ""
    return bool(state.is_failed() and any(message.startswith(f"{label}: ") for label in VERDICT_LABELS.values()))


def final_state(outcome: DeployOutcome, error: BaseException | None) -> Any:
    state_type, label = Verdict(outcome.verdict).final_state
    if error is None:
        return outcome.to_dict()
    if state_type == "CANCELLED":  # a SIGTERM or SIGINT: undone, recorded, not a crash
        error.outcome = outcome.to_dict()
        return Cancelled(message="; ".join(outcome.reasons), data=error)
    if label is not None:
        error.outcome = outcome.to_dict()
        return Failed(message=verdict_message(outcome.verdict, outcome.reasons), data=error)
    raise error
