"""Import heavy libraries in a background thread while the main thread waits on something else.

A deploy spends seconds waiting (Prefect's API, TensorFlow's kernels, file
copies, the canary's boot) before validation needs SciPy, matplotlib and
Great Expectations, which take seconds to import. :class:`Preloader` imports
them meanwhile.

Two threads importing the same cycle of modules at once is the one way
Python's per-module import locks deadlock (CPython then raises
``_DeadlockError`` in one of them). So the modules that both the main thread's
next steps and the background imports load are imported first, in the
calling thread, before the background thread starts: afterwards the two
threads never import the same module at once.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("servegate.runtime.preload")

# What a deploy's steps between the MLflow run and validation (staging's warm-up file, the reference
# data) import that validation's libraries import too. tests/runtime checks each still imports.
VALIDATION_SHARED_MODULES = (
    "sqlite3", "markupsafe", "cryptography.hazmat.primitives.ciphers", "cryptography.hazmat.primitives.hashes",
    "servegate.validation.reference",
)
# What MLflow's SQL store imports that Great Expectations imports too: shared only when MLflow runs in
# this process (a Prefect worker's flow run); the CLI's MLflow runs in a helper process, so there its
# import (~0.3 s) would be the calling thread's for nothing.
MLFLOW_STORE_SHARED_MODULES = (
    "sqlalchemy.orm", "sqlalchemy.connectors.asyncio", "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
)


class Preloader:
    """``start()``: import ``modules_first`` here, then run ``background`` in a daemon thread; ``join()`` waits.

    A failure in ``background`` is logged (debug) and dropped: the code that needs
    the modules imports them again and raises the real error there.
    """

    def __init__(self, modules_first: tuple[str, ...], background: Callable[[], None], name: str = "preload"):
        self.modules_first = tuple(modules_first)
        self.background = background
        self.name = name
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, also_first: tuple[str, ...] = ()) -> None:
        """Start once (later calls do nothing); ``also_first``: more modules to import here first."""
        with self._guard:
            if self._thread is not None:
                return
            for module in self.modules_first + tuple(also_first):
                importlib.import_module(module)
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self.background()
        except Exception as exc:
            log.debug("%s failed: %s", self.name, exc)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background imports (no-op when never started); never leave one running into exit."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


def _preload_validation() -> None:
    from servegate import validation

    validation.preload()


_validation_preloader: Preloader | None = None
_validation_guard = threading.Lock()


def preloader() -> Preloader:
    """This process's one preloader of validation's libraries (:func:`servegate.validation.preload`).

    One per process, so that the step that starts it and the steps that join it
    need to pass nothing to each other.
    """
    global _validation_preloader
    with _validation_guard:
        if _validation_preloader is None:
            _validation_preloader = Preloader(VALIDATION_SHARED_MODULES, _preload_validation,
                                              name="preload-validation")
        return _validation_preloader
