"""Steps "promote version" (undo: production back to what it served) and "verify production".

Promotion and its undo go through the one release path
(:mod:`servegate.release`), which keeps MLflow's ``champion`` in step with
the store. Verification waits for the production server to serve the new
version (:mod:`servegate.deploy.serving_poll`) and then compares its answer
to one smoke row with the golden prediction (:func:`check_smoke_answer`).
"""

from __future__ import annotations

import numpy as np

from servegate.deploy import resources
from servegate.deploy.verdict import ProductionVerificationError
from servegate.deploy.progress import say
from servegate.deploy.record import AttemptRecord


def promote_version(record: AttemptRecord) -> AttemptRecord:
    """The staged version into the production base path (one rename); ``champion`` follows."""
    resources.release(record).promote(record.name, record.version, run_id=record.run_id)
    store = resources.store(record)
    say(f"promote: version {record.version} -> {store.base_path('production', record.name)}")
    return record.but(promoted=True)


def roll_production_back(record: AttemptRecord, reason: str) -> AttemptRecord:
    """Undo of "promote version": production serves what it served before this attempt."""
    if not record.promoted or record.rolled_back:
        return record
    reason = f"rolled back: {reason}"
    release = resources.release(record)
    if record.previous_production is None:  # nothing to go back to: take the new version out
        release.reject(record.name, record.version, reason, run_id=record.run_id)
    else:
        release.rollback(record.name, to_version=record.previous_production, reason=reason,
                         run_id=record.run_id, flow_run_id=record.flow_run_id)
    say(f"rollback: production back to {record.previous_production} ({reason.splitlines()[0]})")
    return record.but(rolled_back=True)


def check_smoke_answer(url: str, name: str, version: int, outputs: dict, expected: np.ndarray | None,
                       output: str | None, atol: float, rtol: float) -> None:
    """Production's answer to the smoke row: finite, and the golden prediction within tolerance."""
    values = np.concatenate([np.asarray(v, dtype="float64").ravel() for v in outputs.values()])
    where = f"production server {url}: version {version} of {name!r} answered the smoke query with"
    if not np.all(np.isfinite(values)):
        raise ProductionVerificationError(f"{where} non-finite values {values[:4].tolist()}")
    if expected is None:
        return
    answer = outputs[output] if output in outputs or len(outputs) != 1 else next(iter(outputs.values()))
    answer = np.asarray(answer, dtype="float64").ravel()
    want = np.asarray(expected, dtype="float64").ravel()
    if answer.shape != want.shape or not np.allclose(answer, want, atol=atol, rtol=rtol):
        raise ProductionVerificationError(
            f"{where} {answer[:4].tolist()}, expected {want[:4].tolist()} (atol {atol}, rtol {rtol})")


def verify_served_version(url: str, name: str, version: int, inputs: dict[str, np.ndarray], deadline_s: float,
                          expected: np.ndarray | None = None, poll_s: float = 0.2, output: str | None = None,
                          atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Wait until ``url`` serves ``version`` of ``name`` and its answer to ``inputs`` checks out.

    Raises :class:`ProductionVerificationError` naming the server, the version
    and what was seen last when ``deadline_s`` passes, or when the smoke answer
    is not finite or not ``expected`` (for ``output``) within ``atol``/``rtol``.
    """
    from servegate.deploy.serving_poll import wait_until_serving

    outputs = wait_until_serving(url, name, version, inputs, deadline_s, poll_s)
    if outputs is None:
        say(f"verify production: {url} already serves a version newer than {version} (a later deploy's)")
        return
    check_smoke_answer(url, name, version, outputs, expected, output, atol, rtol)


def verify_production(record: AttemptRecord) -> AttemptRecord:
    """With a production server URL: it serves the new version and answers like the canary did. With an
    s3:// store: every live node of the fleet (its sync's heartbeats) serves it first."""
    fleet_wait = getattr(resources.store(record), "wait_for_fleet", None)
    if fleet_wait is not None:
        nodes = fleet_wait(record.name, record.version, record.request.production_deadline_s)
        say(f"verify production: {len(nodes)} live node(s) serve version {record.version}"
            + (f" ({', '.join(nodes)})" if nodes else ""))
    url = record.request.production_url
    if not url:
        say("verify production: skipped (no production server configured)")
        return record.but(production_verified=None)
    cfg = resources.config(record)
    batch = next(iter(resources.reference(record, cfg).batches(1)))
    output = cfg.output or resources.signature(record).output_names[0]
    golden = resources.golden(record)
    say(f"verify production: waiting for {url} to serve version {record.version}")
    verify_served_version(
        url, record.name, record.version, {k: v[:1] for k, v in batch.items()}, record.request.production_deadline_s,
        expected=None if golden is None else golden[output][:1], output=output,
        atol=cfg.parity.atol, rtol=cfg.parity.rtol,
    )
    say(f"verify production: {url} serves version {record.version}")
    return record.but(production_verified=True)
