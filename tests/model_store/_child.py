"""A child process for the store tests: ``python _child.py MODE CONFIG_JSON``.

Modes:
- ``hold-lock``: take the model lock and sleep until killed.
- ``stage``: wait for ``go_file``, stage ``src``, print ``{"version": v}``.
- ``promote``: wait for ``go_file``, promote ``version``, logging when the lock
  is taken and released to ``log_file`` (O_APPEND, one line per event) and
  holding it ``hold_s`` seconds; print the outcome.
- ``crash-loop``: stage / promote / reject / rollback forever, writing the
  current step to ``progress_file`` and sleeping a random ``jitter_s`` at every
  step; the parent SIGKILLs it at random moments.
- ``die-at``: run ``ops`` (with ``run_id``) and SIGKILL itself at the ``nth`` time step ``point`` comes.

Prints ``ready`` first, once everything is imported.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time


def main() -> int:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    from servegate.model_store import ModelStore, StoreError, fsutil

    store = ModelStore(config["root"], retention=config.get("retention", 3),
                       lock_timeout=config.get("lock_timeout", 30.0), areas=config.get("areas"))
    model = config["model"]
    print("ready", flush=True)

    def wait_go() -> None:
        go = config.get("go_file")
        while go and not os.path.exists(go):
            time.sleep(0.001)

    if mode == "hold-lock":
        with store.lock(model, operation=config.get("operation", "test"), run_id=config.get("run_id")):
            print("held", flush=True)
            time.sleep(3600)
        return 0

    if mode == "stage":
        wait_go()
        version = store.stage(model, config["src"], run_id=f"pid-{os.getpid()}")
        print(json.dumps({"version": version}), flush=True)
        return 0

    if mode == "promote":
        log_fd = os.open(config["log_file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

        def hook(point: str) -> None:
            if point == "lock:acquired":
                os.write(log_fd, f"in {os.getpid()} {time.time():.6f}\n".encode())
                time.sleep(config.get("hold_s", 0.05))
            elif point == "lock:releasing":
                os.write(log_fd, f"out {os.getpid()} {time.time():.6f}\n".encode())

        fsutil.set_checkpoint_hook(hook)
        wait_go()
        try:
            path = store.promote(model, config["version"], run_id=f"pid-{os.getpid()}")
            print(json.dumps({"ok": str(path)}), flush=True)
        except StoreError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        return 0

    if mode == "crash-loop":
        rng = random.Random(config.get("seed"))
        progress = os.open(config["progress_file"], os.O_WRONLY | os.O_CREAT, 0o644)
        jitter = config.get("jitter_s", 0.002)

        def hook(point: str) -> None:
            os.pwrite(progress, point.encode().ljust(64), 0)
            if jitter:
                time.sleep(rng.random() * jitter)

        fsutil.set_checkpoint_hook(hook)
        while True:
            hook("op:stage")
            version = store.stage(model, config["src"])
            roll = rng.random()
            if roll < 0.7:
                hook("op:promote")
                store.promote(model, version)
            elif roll < 0.85:
                hook("op:reject")
                store.reject(model, version, "crash test")
            else:
                hook("op:rollback")
                try:
                    store.rollback(model)
                except StoreError:
                    pass

    if mode == "die-at":
        seen = {"n": 0}

        def hook(point: str) -> None:
            if point == config["point"]:
                seen["n"] += 1
                if seen["n"] == config.get("nth", 1):
                    os.kill(os.getpid(), signal.SIGKILL)

        fsutil.set_checkpoint_hook(hook)
        run_id = config.get("run_id")
        for op in config["ops"]:
            if op[0] == "stage":
                store.stage(model, config["src"], run_id=run_id)
            elif op[0] == "promote":
                store.promote(model, op[1] if len(op) > 1 else store.versions(model, "staging")[-1], run_id=run_id)
            elif op[0] == "reject":
                store.reject(model, op[1], op[2] if len(op) > 2 else "test", run_id=run_id)
            elif op[0] == "rollback":
                store.rollback(model, op[1] if len(op) > 1 else None, run_id=run_id)
        print("finished", flush=True)
        return 0

    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main())
