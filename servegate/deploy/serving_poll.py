"""Polling a TF Serving REST endpoint until it serves one version: kept apart from judging its answer."""

from __future__ import annotations

import time

import numpy as np

from servegate.deploy.verdict import ProductionVerificationError
from servegate.errors import ServegateError


def wait_until_serving(url: str, name: str, version: int, inputs: dict[str, np.ndarray],
                       deadline_s: float, poll_s: float = 0.2) -> dict | None:
    """Poll ``url`` until ``version`` is the newest AVAILABLE version of ``name`` and answers ``inputs``.

    Returns the answer's outputs. TF Serving's ``latest`` policy swaps on its
    file-system poll, so "serves" means "is the newest AVAILABLE version".
    Returns None when a newer version is already AVAILABLE: a deploy promoted
    after this one superseded it (its own verification covers what production
    serves; rolling back here would take that newer version out too).
    """
    from servegate.serving.client import ServingClient
    from servegate.serving.model_state import available_versions

    deadline = time.monotonic() + deadline_s
    last = "no answer yet"
    with ServingClient(name, rest_url=url.rstrip("/")) as client:
        while True:
            try:
                available = available_versions(client.status())
                last = f"available versions {available}"
                if available and max(available) == version:
                    return client.predict(inputs).outputs
                if available and max(available) > version:
                    return None
            except ServegateError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise ProductionVerificationError(
                    f"production server {url} did not serve version {version} of {name!r} within "
                    f"{deadline_s:.0f} s (last seen: {last})")
            time.sleep(poll_s)
