"""``python -m servegate.serving.server.spare --workdir DIR``: a bundled server started before its flags are known.

The bundled server spends seconds importing TensorFlow before it can load a
model. A deploy knows it will need a canary long before the candidate is
staged and the canary's flags exist, so the process runner may start this
process early (:mod:`servegate.serving.runners.spare`) and hand it the flags
once it launches the canary. Protocol and life cycle:

1. started with stdin a pipe from its owner, stdout/stderr discarded, in its
   own session, with ``--workdir`` the canary work dir the runner will use
   (so that the process is recognisable by that path from the start);
2. imports what the server needs (TensorFlow, the loader, gRPC, uvicorn)
   while a thread waits for one line on stdin;
3. the line is a JSON object ``{"argv": [...], "log": path}``: stdout and
   stderr are redirected to ``log`` (appending) and the process runs exactly
   what ``python -m servegate.serving ARGV`` runs (:func:`main.run`, with its
   flags, exit statuses and "ports closed until the first load" behaviour),
   exiting with its status;
4. once ``run`` returns (after SIGTERM: ports closed, models unloaded) the
   process exits without the interpreter's TensorFlow teardown;
5. end of file on stdin before a line (the owner did not need it, or died,
   even SIGKILLed) ends the process at once, removing ``--workdir`` if still
   empty of a server's files — no leftover either way.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading


def _parse_workdir(argv: list[str]) -> str:
    if len(argv) != 2 or argv[0] != "--workdir":
        print("usage: python -m servegate.serving.server.spare --workdir DIR", file=sys.stderr)
        raise SystemExit(2)
    return argv[1]


def main(argv: list[str] | None = None) -> int:
    workdir = _parse_workdir(list(sys.argv[1:] if argv is None else argv))
    requests: list[str] = []
    arrived = threading.Event()

    def wait_for_request() -> None:
        line = sys.stdin.readline()
        if not line.strip():
            # The owner is gone or gave up: nothing to serve. Ends even mid-import.
            shutil.rmtree(workdir, ignore_errors=True)
            os._exit(0)
        requests.append(line)
        arrived.set()

    threading.Thread(target=wait_for_request, name="warm-request", daemon=True).start()

    # What `python -m servegate.serving` imports on its way to the first load (and, like it, no Keras).
    from servegate.serving.server.without_keras import keep_keras_out

    keep_keras_out()
    import uvicorn  # noqa: F401

    from servegate.serving.server import grpc_service, loader, manager, rest  # noqa: F401

    arrived.wait()
    request = json.loads(requests[0])
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.chdir(workdir)
    from servegate.serving.server.main import run

    return run(list(request["argv"]))


if __name__ == "__main__":
    from servegate.runtime.fastexit import exit_without_teardown

    # run() has returned: ports closed, models unloaded, nothing written any more; the canary's
    # owner waits for this process to be gone, so skip TensorFlow's teardown (only the atexit
    # handlers, logging's flush among them, still run; threads are not joined, as before).
    exit_without_teardown(main(), join_threads=False)
