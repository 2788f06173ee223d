"""The two ways an attempt ends that are verdicts, not errors (exit code 1).

Each is tied to one decision: :class:`ModelRejected` — validation judged the
candidate, undo everything; :class:`ProductionVerificationError` — production
did not serve the promoted version correctly (or, :class:`BakeAlarm`, served it
badly during the bake), roll production back. Any other
exception is an error (exit code 2), undone the same way.
"""

from __future__ import annotations

from servegate.errors import ServegateError, ServingError


class ModelRejected(ServegateError):
    """Validation failed: the candidate was rejected and production left as it was (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


class ProductionVerificationError(ServingError):
    """The production server did not serve the promoted version, or its smoke query failed."""

    exit_code = 1


class BakeAlarm(ProductionVerificationError):
    """The bake watched production after promotion and an alarm fired: production is rolled back (exit 1).

    ``alarm``: the alarm that fired, as plain values (``name``, ``message``, ``figures``).
    """

    def __init__(self, message: str, alarm: dict | None = None) -> None:
        super().__init__(message)
        self.alarm = dict(alarm or {})


#: Exceptions that are an attempt's verdict (exit 1): the step that raised them judged, it did not crash.
VERDICTS = (ModelRejected, ProductionVerificationError)


def failure_reason(exc: BaseException) -> str:
    """The first line a person reads about ``exc``; once a SIGTERM or SIGINT arrived, "cancelled by ..."
    whatever ``exc`` is (the interrupted code may have wrapped the signal into an error of its own)."""
    from servegate.attempt import cancel

    cancelled = cancel.reason()
    if cancelled is not None:
        return cancelled
    return str(exc.args[0]) if exc.args else type(exc).__name__
