"""What a TF Serving server says about a model's versions (GetModelStatus), read in one place.

The runners only start and stop servers; waiting for a version is the
client's side, as in TFX. Every poller reads the ``model_version_status``
entries through these functions: the runner's wait for its canary
(:mod:`servegate.serving.runners.base`), the deploy's wait for production
(:mod:`servegate.deploy.serving_poll`) and the demo's production server.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Seen:
    """One round of status requests: all versions AVAILABLE and labels resolved, what was seen, and the
    version that failed to load (version, state, error) if one did."""

    ready: bool
    said: str
    failed: tuple[int, str, str] | None = None


def _ask(session, url: str, what: str, timeout_s: float):
    """(the answer, "") to one status request, or (None, why there is none)."""
    import requests

    try:
        response = session.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        # Refused until the first load finishes (TF Serving opens its ports late): keep polling.
        return None, f"{what}: no answer ({type(exc).__name__})"
    if response.status_code != 200:
        return None, f"{what}: HTTP {response.status_code} {response.text.strip()[:200]}".rstrip()
    return response, ""


def probe(session, rest_url: str, name: str, versions: Iterable[int], labels: Iterable[str],
          timeout_s: float) -> Seen:
    """Ask ``rest_url`` (TF Serving's REST API) once about each version and label of ``name``."""
    base = f"{rest_url}/v1/models/{name}"
    seen: list[str] = []
    for version in versions:
        response, why = _ask(session, f"{base}/versions/{version}", f"version {version}", timeout_s)
        if response is None:
            return Seen(False, why)
        try:
            state, error = version_state(response.json()["model_version_status"], version)
        except (ValueError, KeyError, TypeError):
            state, error = f"unreadable status body {response.text[:200]!r}", ""
        if error:
            return Seen(False, f"version {version}: {state}", (version, state, error))
        seen.append(f"version {version}: {state}")
        if state != AVAILABLE:
            return Seen(False, ", ".join(seen))
    for label in labels:
        response, why = _ask(session, f"{base}/labels/{label}", f"label {label}", timeout_s)
        if response is None:
            return Seen(False, "; ".join(part for part in (", ".join(seen), why) if part))
    return Seen(True, ", ".join(seen))


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
