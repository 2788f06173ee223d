"""Errors with TensorFlow Serving's status codes, and how each surfaces on REST and gRPC.

Every failure a request can meet inside the server is a :class:`StatusError`
carrying a canonical code name (``NOT_FOUND``, ``INVALID_ARGUMENT``, ...) and
TensorFlow Serving's wording; ``rest.py`` turns it into ``{"error": message}``
with the HTTP code TensorFlow Serving uses for that code, ``grpc_service.py``
into the gRPC status of the same name.
"""

from __future__ import annotations

import grpc

from servegate.errors import ServingError

# Canonical code name -> numeric code (google.rpc.Code / absl::StatusCode).
CODES: dict[str, int] = {sc.name: sc.value[0] for sc in grpc.StatusCode}

# TensorFlow Serving's mapping of canonical codes to HTTP status (http_rest_api_handler).
_HTTP: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "DEADLINE_EXCEEDED": 504,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
}


class StatusError(ServingError):
    """A request or load failed with canonical ``code`` and a TensorFlow-Serving-worded message."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown status code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP.get(self.code, 500)

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return grpc.StatusCode[self.code]


def code_name(number: int) -> str:
    """Canonical code name of a numeric code (``5`` -> ``NOT_FOUND``); unknown numbers are ``UNKNOWN``."""
    for name, value in CODES.items():
        if value == number:
            return name
    return "UNKNOWN"
