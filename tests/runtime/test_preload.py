"""Preloader: shared modules first (calling thread), the rest in one background thread; errors dropped."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading

import pytest

from servegate.runtime.preload import MLFLOW_STORE_SHARED_MODULES, VALIDATION_SHARED_MODULES, Preloader, preloader


def test_modules_first_load_in_the_caller_before_the_background_starts():
    seen = {}
    sys.modules.pop("colorsys", None)

    def background():
        seen["thread"] = threading.current_thread().name
        seen["colorsys_loaded"] = "colorsys" in sys.modules

    p = Preloader(("colorsys",), background, name="preload-test")
    assert not p.started
    p.start()
    p.start()  # once only
    p.join()
    assert seen == {"thread": "preload-test", "colorsys_loaded": True}


def test_a_failing_background_is_dropped_and_join_returns():
    calls = []

    def background():
        calls.append(1)
        raise ImportError("no such library")

    p = Preloader((), background)
    p.join()  # never started: nothing to wait for
    p.start()
    p.join()
    assert calls == [1]


def test_one_validation_preloader_per_process_and_its_shared_modules_import():
    assert preloader() is preloader()
    for module in VALIDATION_SHARED_MODULES + MLFLOW_STORE_SHARED_MODULES:  # a renamed module must fail here, not in a deploy
        importlib.import_module(module)


_START_PRELOAD = """
import sys, threading
from servegate.deploy import resources, startup
from types import SimpleNamespace
from servegate.runtime import preload

release = threading.Event()
preload._validation_preloader = preload.Preloader(preload.VALIDATION_SHARED_MODULES, release.wait)
if sys.argv[1] == "helper":
    resources._helpers[None] = object()  # MLflow for the default URI runs in a helper process
startup._start_preload(SimpleNamespace(request=SimpleNamespace(tracking_uri=None)))
print("sqlalchemy.orm" in sys.modules)
release.set()
"""


@pytest.mark.parametrize("tracking, imports_sqlalchemy", [("helper", "False"), ("in-process", "True")])
def test_sqlalchemy_is_imported_first_only_when_mlflow_runs_in_this_process(tracking, imports_sqlalchemy):
    # A fresh interpreter: this test session may have imported SQLAlchemy already.
    done = subprocess.run([sys.executable, "-c", _START_PRELOAD, tracking], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == imports_sqlalchemy
