"""How a deploy flow run ends: Completed with the outcome, or Failed with the reasons as its message.

A rejection (or a rollback after production verification failed) is an
expected outcome, not a crash: the run ends Failed with the reasons as its
message, so that ``prefect deployment run --watch`` exits non-zero; the
state is named after the verdict ("Rejected", "RolledBack": the name the
Prefect UI shows, and what :mod:`servegate.flows.engine` exits 0 for). The
state's data is the verdict exception with the outcome dict as its
``outcome`` attribute, for in-process callers such as the CLI. An error is
raised as it is.
"""

from __future__ import annotations

from typing import Any

from prefect.states import Cancelled, Failed

from servegate.attempt.record import DeployOutcome


def final_state(outcome: DeployOutcome, error: BaseException | None) -> Any:
    if error is None:
        return outcome.to_dict()
    if outcome.verdict == "cancelled":  # a SIGTERM or SIGINT: undone, recorded, not a crash
        error.outcome = outcome.to_dict()
        return Cancelled(message="; ".join(outcome.reasons), data=error)
    if outcome.verdict in ("rejected", "rolled_back"):
        error.outcome = outcome.to_dict()
        name = "Rejected" if outcome.verdict == "rejected" else "RolledBack"
        return Failed(name=name, message="; ".join(outcome.reasons), data=error)
    raise error
