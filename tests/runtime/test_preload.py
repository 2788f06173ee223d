"""Preloader: shared modules first (calling thread), the rest in one background thread; errors dropped."""

from __future__ import annotations

import importlib
import sys
import threading

from servegate.runtime.preload import VALIDATION_SHARED_MODULES, Preloader, preloader


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
    for module in VALIDATION_SHARED_MODULES:  # a renamed module must fail here, not in a deploy
        importlib.import_module(module)
