"""How an attempt ends: the :class:`Verdict` (exit code, Prefect final state, event) and the
exceptions that carry a judged step's verdict with its record.

Every ending is one :class:`Verdict`; the CLI's exit code, the flow run's
final state, the MLflow outcome and the Prefect event all ask it. Two
verdicts come from a step that judged, raised as an exception carrying the
record the judging step produced (its reasons, report, bake):
:class:`ModelRejected` — validation judged the candidate, undo everything;
:class:`ProductionVerificationError` — production did not serve the promoted
version correctly (or, :class:`BakeAlarm`, served it badly during the bake),
roll production back. Any other exception is an error (exit code 2), undone
the same way.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from servegate.errors import ServegateError, ServingError

if TYPE_CHECKING:
    from servegate.deploy.record import AttemptRecord


class Verdict(str, Enum):
    """An attempt's ending, as ``DeployOutcome.verdict`` spells it."""

    PROMOTED = "promoted"
    UNCHANGED = "unchanged"  # production already serves this very model (a re-run); nothing was created
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"  # SIGTERM or SIGINT: undone and recorded
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        """The command's exit code; ``cancelled``: 128 + the signal's number (130 before any signal)."""
        if self is Verdict.CANCELLED:
            from servegate.deploy import cancel

            return cancel.exit_code() or 130
        return _EXIT_CODES[self]

    @property
    def final_state(self) -> tuple[str, str | None]:
        """The flow run's final state: (Prefect state type, the first words of its message or None)."""
        return _FINAL_STATES[self]

    @property
    def event(self) -> str | None:
        """The Prefect event announcing it (None: nothing about the model to announce)."""
        return _EVENTS.get(self)

    @classmethod
    def of(cls, error: BaseException | None, rolled_back: bool) -> "Verdict":
        """The verdict of an attempt stopped by ``error`` (None: every step passed)."""
        from servegate.deploy import cancel

        if error is None:
            return cls.PROMOTED
        if cancel.received() is not None:
            return cls.CANCELLED  # whatever the interrupted code raised: the signal stopped it
        if isinstance(error, ModelRejected):
            return cls.REJECTED
        if isinstance(error, ProductionVerificationError) and rolled_back:
            return cls.ROLLED_BACK
        return cls.ERROR


_EXIT_CODES = {Verdict.PROMOTED: 0, Verdict.UNCHANGED: 0, Verdict.REJECTED: 1, Verdict.ROLLED_BACK: 1,
               Verdict.ERROR: 2}
# A verdict is no crash: Prefect's own state names (the UI's default filters select by name), the verdict in
# the message (flows/final_state.py).
_FINAL_STATES = {Verdict.PROMOTED: ("COMPLETED", None), Verdict.UNCHANGED: ("COMPLETED", None),
                 Verdict.REJECTED: ("FAILED", "Rejected"), Verdict.ROLLED_BACK: ("FAILED", "Rolled back"),
                 Verdict.CANCELLED: ("CANCELLED", None), Verdict.ERROR: ("FAILED", None)}
_EVENTS = {Verdict.PROMOTED: "servegate.model.promoted", Verdict.REJECTED: "servegate.model.rejected",
           Verdict.ROLLED_BACK: "servegate.model.rolled_back"}


def exit_code_for(verdict: str) -> int:
    """The exit code of a verdict's name; an unknown name is an error (2)."""
    try:
        return Verdict(verdict).exit_code
    except ValueError:
        return 2


class _Judged:
    """What a judged step's exception carries: the record that step produced (None when raised outside a step)."""

    record: "AttemptRecord | None" = None
    #: the name of the judging task's Failed state in the Prefect UI
    state_name = "Judged"

    def payload(self, default: "AttemptRecord") -> dict[str, Any]:
        """The verdict as plain values (kept in the flow's journal between a task and the flow), with the
        record it carries (``default`` when it carries none)."""
        record = self.record if self.record is not None else default
        return {"kind": type(self).__name__, "message": failure_reason(self),
                "reasons": list(getattr(self, "reasons", [])), "alarm": getattr(self, "alarm", None),
                "record": record.to_dict()}


class ModelRejected(_Judged, ServegateError):
    """Validation failed: the candidate was rejected and production left as it was (exit code 1)."""

    exit_code = 1
    state_name = "Rejected"

    def __init__(self, message: str, reasons: list[str], record: "AttemptRecord | None" = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons)
        self.record = record


class ProductionVerificationError(_Judged, ServingError):
    """The production server did not serve the promoted version, or its smoke query failed."""

    exit_code = 1
    state_name = "VerificationFailed"

    def __init__(self, message: str, *args: Any, record: "AttemptRecord | None" = None, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        self.record = record


class BakeAlarm(ProductionVerificationError):
    """The bake watched production after promotion and an alarm fired: production is rolled back (exit 1).

    ``alarm``: the alarm that fired, as plain values (``name``, ``message``, ``figures``).
    """

    state_name = "BakeAlarm"

    def __init__(self, message: str, alarm: dict | None = None, record: "AttemptRecord | None" = None) -> None:
        super().__init__(message, record=record)
        self.alarm = dict(alarm or {})


#: Exceptions that are an attempt's verdict (exit 1): the step that raised them judged, it did not crash.
VERDICTS = (ModelRejected, ProductionVerificationError)


def judged_record(exc: BaseException, default: "AttemptRecord") -> "AttemptRecord":
    """The record a verdict exception carries; ``default`` for any other exception (or none carried)."""
    record = exc.record if isinstance(exc, _Judged) else None
    return record if record is not None else default


def from_payload(payload: dict[str, Any], record: "AttemptRecord") -> _Judged:
    """The verdict exception :meth:`_Judged.payload` described, carrying ``record`` (its ``record`` rebuilt)."""
    if payload["kind"] == "ModelRejected":
        return ModelRejected(payload["message"], payload["reasons"], record=record)
    if payload["kind"] == "BakeAlarm":
        return BakeAlarm(payload["message"], payload.get("alarm"), record=record)
    return ProductionVerificationError(payload["message"], record=record)


def failure_reason(exc: BaseException) -> str:
    """The first line a person reads about ``exc``; once a SIGTERM or SIGINT arrived, "cancelled by ..."
    whatever ``exc`` is (the interrupted code may have wrapped the signal into an error of its own)."""
    from servegate.deploy import cancel

    cancelled = cancel.reason()
    if cancelled is not None:
        return cancelled
    return str(exc.args[0]) if exc.args else type(exc).__name__
