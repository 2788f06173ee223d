"""What a TF Serving server says about a model's versions (GetModelStatus), read in one place.

The runners only start and stop servers; waiting for a version is the
client's side, as in TFX. Every poller reads the ``model_version_status``
entries through these functions: the runner's wait for its canary
(:mod:`servegate.serving.runners.base`), the deploy's wait for production
(:mod:`servegate.deploy.serving_poll`) and the demo's production server.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

AVAILABLE = "AVAILABLE"


def available_versions(statuses: Iterable[Mapping[str, Any]]) -> list[int]:
    """The AVAILABLE versions among ``model_version_status`` entries, in order."""
    return sorted(int(s["version"]) for s in statuses if str(s.get("state", "")).upper() == AVAILABLE)


def version_state(statuses: Iterable[Mapping[str, Any]], version: int) -> tuple[str, str]:
    """(state, error message or "") of ``version``; the error only for a version that failed to load."""
    for status in statuses:
        if str(status.get("version")) == str(version):
            state = status.get("state", "UNKNOWN")
            detail = status.get("status") or {}
            code = detail.get("error_code", "OK")
            if code not in ("OK", 0, "0") and state in ("END", "UNKNOWN"):
                return state, f"{code}: {detail.get('error_message', '')}"
            return state, ""
    return "not listed", ""


def serving_version(rest_url: str, name: str, timeout_s: float = 2.0) -> int | None:
    """The newest AVAILABLE version of ``name`` at ``rest_url`` (TF Serving's ``latest`` policy serves
    it); None when there is none or the server does not answer."""
    from servegate.errors import ServegateError
    from servegate.serving.client import ServingClient

    try:
        with ServingClient(name, rest_url=rest_url.rstrip("/"), timeout_s=timeout_s) as client:
            available = available_versions(client.status())
    except ServegateError:
        return None
    return max(available) if available else None
