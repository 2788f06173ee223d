"""Exit a process that imported TensorFlow without the interpreter's module teardown.

TensorFlow's teardown at interpreter exit takes seconds and writes nothing.
:func:`exit_without_teardown` first finishes everything that can hold
unwritten work, in the order the interpreter itself uses at exit — optionally
joining non-daemon threads and running ``threading``'s exit hooks (Prefect
drains its log and event workers there), then the ``atexit`` handlers
(``logging`` flushes and closes its handlers), then stdout and stderr are
flushed — and then calls ``os._exit``. Only the module teardown is skipped.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def exit_without_teardown(code: int, *, join_threads: bool = True) -> None:
    if join_threads:
        threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx runs first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
