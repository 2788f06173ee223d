"""Fixtures of the model store tests: sources, a store, a child-process runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servegate.model_store import ModelStore, fsutil
from tests.model_store.treeutil import other_filesystem
from tests.support.cli import checkout_pythonpath

CHILD = Path(__file__).with_name("_child.py")


@pytest.fixture(scope="session")
def hp2_src(tfs_testdata) -> Path:
    """TF Serving's half_plus_two SavedModel (read-only, shared)."""
    return tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"


@pytest.fixture(scope="session")
def model_src(hp2_src, tmp_path_factory) -> Path:
    """half_plus_two plus a 256 KiB asset, so that copies take a little while."""
    path = tmp_path_factory.mktemp("src") / "half_plus_two"
    shutil.copytree(hp2_src, path)
    (path / "assets" / "filler.bin").write_bytes(os.urandom(256 * 1024))
    return path


@pytest.fixture(scope="session")
def model_digest(model_src) -> str:
    return fsutil.tree_digest(model_src)


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root) -> ModelStore:
    return ModelStore(root, retention=3, lock_timeout=10.0)


@pytest.fixture
def other_fs(tmp_path):
    with other_filesystem(tmp_path) as path:
        if path is None:
            pytest.skip("no second filesystem available (needs root for a tmpfs mount, or /dev/shm)")
        yield path


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": checkout_pythonpath()}


def spawn_child(mode: str, config: dict, **popen) -> subprocess.Popen:
    """Start ``_child.py MODE CONFIG_JSON``; it prints "ready" once it has imported everything."""
    return subprocess.Popen([sys.executable, str(CHILD), mode, json.dumps(config)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_child(mode: str, config: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHILD), mode, json.dumps(config)], env=child_env(),
                          capture_output=True, text=True, timeout=timeout)
