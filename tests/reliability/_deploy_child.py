"""``python -m tests.reliability._deploy_child deploy ...``: ``servegate deploy`` that SIGKILLs itself at a named step.

The command is exactly ``python -m servegate`` (same argv, same exit codes; any command, e.g. ``sync``);
the only addition is a trigger, read from the environment, that SIGKILLs
this process's whole process group the moment a named point is reached. It
makes "kill at a step boundary" deterministic instead of a race against a
timer. Nothing is faked: the step runs for real up to the kill.

``SERVEGATE_TEST_KILL_AT`` is one of

- ``after_export`` — the step "export model" returned (SavedModel in the work dir);
- ``canary_up`` — ``attempt.canary.boot_canary`` returned (the canary is AVAILABLE);
- ``during_validation`` — ``SERVEGATE_TEST_KILL_DELAY`` seconds (default 0.3)
  after ``attempt.canary.run_validation`` began sending the reference rows;
- ``during_verify`` — the same delay after ``attempt.production.verify_served_version`` began
  (the new version is in production; the production server may not serve it yet), or as it
  returns when it returns sooner (as for ``during_validation`` and ``during_bake``);
- ``during_bake`` — the same delay after the bake began watching production
  (``bake.baking.run_bake``: the new version is in production and the
  bake is marked ``in_progress`` in MLflow);
- ``store:<checkpoint>`` — the store's own step names (``fsutil.checkpoint``), e.g.
  ``store:stage:copied`` (the copy is complete in a temp dir, not yet renamed
  into place) or ``store:promote:before-rename`` (the lock is held, production
  not yet changed); with an ``s3://`` store ``store:s3-stage:file-uploaded`` (a file of
  the version in the bucket, no manifest), ``store:s3-stage:published``,
  ``store:s3-promote:before-write`` (published; production.json not yet written), and
  in ``servegate sync`` ``store:s3-download:file`` and ``store:s3-download:verified``.

``SERVEGATE_TEST_CRASH_CANARY=1`` instead SIGKILLs the *canary's* process group
mid-validation: after the warm-up request succeeded, as the measured pass
starts sending (``ServingClient.predict_many``): a canary that dies mid-validation.

``SERVEGATE_TEST_HANG_CANARY=1`` SIGSTOPs every process canary's process group
right after it starts: a canary that hangs and never becomes available.

Before the kill it appends the point's name to ``SERVEGATE_TEST_KILL_LOG``
(when set), so that the parent knows the kill came from the trigger.

``SERVEGATE_TEST_KILL_SIGNAL=none`` only writes that line and lets the deploy
go on: the parent sends a signal of its own from outside (SIGTERM, SIGINT: a
CI job cancelled) the moment it reads the point's name.

``SERVEGATE_TEST_TRACE`` names a file that gets one line per step started
(``step:<name>``) and per store checkpoint passed (``store:<checkpoint>``), each
with its wall-clock time: after a kill from outside at a random moment, its
last line says which window the kill hit.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time


def _die(point: str) -> None:
    log = os.environ.get("SERVEGATE_TEST_KILL_LOG")
    if log:
        with open(log, "a") as f:
            f.write(point + "\n")
            f.flush()
            os.fsync(f.fileno())
    if os.environ.get("SERVEGATE_TEST_KILL_SIGNAL") == "none":
        return  # the parent signals this process itself
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _after(module, name: str, point: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        _die(point)
        return result

    setattr(module, name, wrapper)


def _during(module, name: str, point: str, delay: float) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        fired = threading.Lock()

        def die_once() -> None:
            if fired.acquire(blocking=False):
                _die(point)

        timer = threading.Timer(delay, die_once)
        timer.daemon = True
        timer.start()
        try:
            return original(*args, **kwargs)
        finally:
            # A call shorter than the delay (production already serving the version at the first poll)
            # is killed as it returns, still inside its step: the kill is never missed.
            timer.cancel()
            die_once()

    setattr(module, name, wrapper)


def _after_step(step_name: str, point: str) -> None:
    """Kill after a declared step returned (the plain runner and the flow both read ``steps.STEPS``)."""
    import dataclasses

    from servegate.deploy import steps

    def wrap(step):
        if step.name != step_name:
            return step

        def run(record):
            result = step.run(record)
            _die(point)
            return result

        return dataclasses.replace(step, run=run)

    steps.STEPS = tuple(wrap(s) for s in steps.STEPS)


class _Trace:
    """Appends ``<time> <what>`` lines to ``SERVEGATE_TEST_TRACE`` (nothing without it)."""

    def __init__(self) -> None:
        path = os.environ.get("SERVEGATE_TEST_TRACE")
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None

    def note(self, what: str) -> None:
        if self.fd is not None:
            os.write(self.fd, f"{time.time():.3f} {what}\n".encode())

    def steps(self) -> None:
        """Note each declared step as it starts (both runners read ``steps.STEPS``)."""
        import dataclasses

        from servegate.deploy import steps

        def wrap(step):
            def run(record):
                self.note(f"step:{step.name}")
                return step.run(record)

            return dataclasses.replace(step, run=run)

        if self.fd is not None:
            steps.STEPS = tuple(wrap(s) for s in steps.STEPS)


def _crash_canary_mid_validation(canary) -> None:
    from servegate.serving.client import ServingClient

    live: list = []
    run_validation, predict_many = canary.run_validation, ServingClient.predict_many

    def tracking_validation(record, runner, *args, **kwargs):
        live.append(runner)
        return run_validation(record, runner, *args, **kwargs)

    def crashing_predict_many(self, *args, **kwargs):
        pid = getattr(live[-1], "pid", None) if live else None
        if pid:
            os.killpg(pid, signal.SIGKILL)  # the process runner's server leads its own group
        return predict_many(self, *args, **kwargs)

    canary.run_validation = tracking_validation
    ServingClient.predict_many = crashing_predict_many


def _hang_canaries() -> None:
    from servegate.serving.runners.process import ProcessRunner

    start = ProcessRunner.start

    def hanging_start(self, *args, **kwargs):
        result = start(self, *args, **kwargs)
        if self.pid:
            os.killpg(self.pid, signal.SIGSTOP)  # alive, but answers nothing: it hangs
        return result

    ProcessRunner.start = hanging_start


def install() -> None:
    point = os.environ.get("SERVEGATE_TEST_KILL_AT")
    delay = float(os.environ.get("SERVEGATE_TEST_KILL_DELAY", "0.3"))
    from servegate.deploy import canary, production
    from servegate.model_store import fsutil

    trace = _Trace()
    trace.steps()
    wanted = point.removeprefix("store:") if point and point.startswith("store:") else None

    def checkpoint(name: str) -> None:
        trace.note(f"store:{name}")
        if name == wanted:
            _die(point)

    fsutil.set_checkpoint_hook(checkpoint)
    if os.environ.get("SERVEGATE_TEST_CRASH_CANARY") == "1":
        _crash_canary_mid_validation(canary)
    if os.environ.get("SERVEGATE_TEST_HANG_CANARY") == "1":
        _hang_canaries()
    if not point:
        return
    if point == "after_export":
        _after_step("export model", point)
    elif point == "canary_up":
        _after(canary, "boot_canary", point)
    elif point == "during_validation":
        _during(canary, "run_validation", point, delay)
    elif point == "during_verify":
        _during(production, "verify_served_version", point, delay)
    elif point == "during_bake":
        from servegate.bake import baking

        _during(baking, "run_bake", point, delay)
    elif wanted is None:
        raise SystemExit(f"SERVEGATE_TEST_KILL_AT={point!r} is unknown")


if __name__ == "__main__":
    install()
    from servegate.cli import main

    sys.exit(main(sys.argv[1:]))
