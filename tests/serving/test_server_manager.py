"""The version manager's policy, with a recording loader at the loader seam (no TensorFlow).

The end-to-end behaviour (real models, real server) is in test_server_swap.py;
these cases pin the ordering rules that make a swap safe.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from servegate.serving.server.manager import ModelManager, ServableManager, StartupError, list_versions
from servegate.serving.server.model_config import ModelConfig, VersionPolicy
from servegate.serving.server.status import StatusError


class FakeServable:
    def __init__(self, name, version, path, events):
        self.name, self.version, self.path, self.events = name, version, path, events
        self.closed = False

    def close(self):
        self.closed = True
        self.events.append(("close", self.version))


class RecordingLoader:
    """Loads any directory without a ``BROKEN`` file; records loads and closes in order."""

    def __init__(self):
        self.events: list[tuple[str, int]] = []

    def __call__(self, name, version, path: Path):
        if (path / "BROKEN").exists():
            self.events.append(("fail", version))
            raise StatusError("NOT_FOUND", f"no SavedModel in {path}")
        self.events.append(("load", version))
        return FakeServable(name, version, path, self.events)


def _version(base: Path, name: str, broken: bool = False) -> None:
    (base / name).mkdir()
    if broken:
        (base / name / "BROKEN").write_text("")


def _manager(base: Path, loader, policy=VersionPolicy()) -> ModelManager:
    return ModelManager(ModelConfig("m", base, policy), loader, max_num_load_retries=0, load_retry_interval_s=0)


def test_only_numeric_directories_are_versions(tmp_path):
    for name in ("00000123", "7", ".tmp-9", "abc", "12a"):
        (tmp_path / name).mkdir()
    (tmp_path / "42").write_text("a file, not a version")
    assert list_versions(tmp_path) == {123: tmp_path / "00000123", 7: tmp_path / "7"}


def test_new_version_loads_before_the_old_one_unloads(tmp_path):
    loader = RecordingLoader()
    manager = _manager(tmp_path, loader)
    _version(tmp_path, "1")
    manager.poll_once()
    _version(tmp_path, "2")
    manager.poll_once()
    assert loader.events == [("load", 1), ("load", 2), ("close", 1)]
    assert [(s.version, s.state) for s in manager.statuses()] == [(2, "AVAILABLE"), (1, "END")]


def test_failed_version_keeps_the_old_one_and_is_not_retried(tmp_path):
    loader = RecordingLoader()
    manager = _manager(tmp_path, loader)
    _version(tmp_path, "1")
    manager.poll_once()
    _version(tmp_path, "2", broken=True)
    manager.poll_once()
    manager.poll_once()
    assert loader.events == [("load", 1), ("fail", 2)]
    [failed, serving] = manager.statuses()
    assert (failed.version, failed.state, failed.error_code) == (2, "END", "NOT_FOUND")
    assert (serving.version, serving.state) == (1, "AVAILABLE")
    with manager.acquire() as servable:
        assert servable.version == 1


def test_unload_waits_for_in_flight_requests(tmp_path):
    loader = RecordingLoader()
    manager = _manager(tmp_path, loader)
    _version(tmp_path, "1")
    manager.poll_once()
    with manager.acquire() as servable:
        _version(tmp_path, "2")
        manager.poll_once()
        assert not servable.closed  # still in use by this request
        with manager.acquire() as newer:
            assert newer.version == 2  # new requests already go to the new version
    assert servable.closed


def test_lookups_by_version_and_label(tmp_path):
    loader = RecordingLoader()
    config = ModelConfig("m", tmp_path, VersionPolicy("all"), labels={"stable": 1, "canary": 2})
    manager = ModelManager(config, loader, 0, 0)
    _version(tmp_path, "1")
    _version(tmp_path, "2")
    manager.poll_once()
    with manager.acquire(label="stable") as servable:
        assert servable.version == 1
    with manager.acquire() as servable:
        assert servable.version == 2
    with pytest.raises(StatusError, match=r"Specific\(m, 5\)"):
        with manager.acquire(version=5):
            pass


def test_retries_then_end(tmp_path):
    loader = RecordingLoader()
    manager = ModelManager(ModelConfig("m", tmp_path), loader, max_num_load_retries=2, load_retry_interval_s=0)
    _version(tmp_path, "1", broken=True)
    manager.poll_once()
    assert loader.events == [("fail", 1)] * 3
    assert manager.settled()


def test_startup_fails_when_a_model_cannot_load(tmp_path):
    _version(tmp_path, "1", broken=True)
    manager = ServableManager([ModelConfig("m", tmp_path)], RecordingLoader(), poll_wait_s=0.1,
                              max_num_load_retries=0)
    with pytest.raises(StartupError, match=r"Loading servable \{name: m version: 1\} failed: NOT_FOUND"):
        manager.start()


def test_startup_waits_for_a_first_version(tmp_path):
    manager = ServableManager([ModelConfig("m", tmp_path)], RecordingLoader(), poll_wait_s=0.05)
    threading.Timer(0.3, lambda: _version(tmp_path, "4")).start()
    manager.start()
    try:
        assert [s.version for s in manager.status("m")] == [4]
    finally:
        manager.stop()


def test_retries_stop_when_the_version_directory_disappears(tmp_path):
    """A version rolled back while it was failing to load must not hold the polling thread for its
    retry interval: the next version would wait behind it."""
    loader = RecordingLoader()
    manager = ModelManager(ModelConfig("m", tmp_path), loader, max_num_load_retries=5, load_retry_interval_s=60)
    _version(tmp_path, "1", broken=True)
    threading.Timer(0.3, lambda: (tmp_path / "1").rename(tmp_path / ".gone-1")).start()
    poll = threading.Thread(target=manager.poll_once)
    poll.start()
    poll.join(timeout=10)
    assert not poll.is_alive(), "the load kept retrying a version whose directory is gone"
    assert loader.events == [("fail", 1)]
    _version(tmp_path, "2")
    manager.poll_once()
    assert manager.available_versions() == [2]


def test_retries_continue_while_the_directory_stays(tmp_path):
    loader = RecordingLoader()
    manager = ModelManager(ModelConfig("m", tmp_path), loader, max_num_load_retries=2, load_retry_interval_s=0.2)
    _version(tmp_path, "1", broken=True)
    manager.poll_once()
    assert loader.events == [("fail", 1)] * 3
