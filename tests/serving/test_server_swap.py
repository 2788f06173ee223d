"""Version handling under load: a new version dropped into the base path is served within one
poll interval plus its load time with zero failed requests; a broken version dropped in leaves
the old one serving and shows its error in status (state END).

Versions arrive the way the store promotes them: copied under a dot-named
temp directory (ignored by the server), then renamed to their number.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

POLL_S = 0.3
MAX_LOAD_S = 30.0


@dataclass
class LoadClient:
    """A thread posting ``{"instances": [1.0]}`` back to back, bounded in count and time."""

    url: str
    max_requests: int = 20_000
    max_seconds: float = 120.0
    answers: list[tuple[float, float]] = field(default_factory=list)  # (monotonic time, prediction)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                response = session.post(self.url, json={"instances": [1.0]}, timeout=10)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                else:
                    self.answers.append((time.monotonic(), response.json()["predictions"][0]))
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def first_answer(self, value: float, after: float, timeout: float) -> float | None:
        """When ``value`` was first answered after ``after`` (waits up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, v in list(self.answers):
                if t >= after and v == value:
                    return t
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _drop_version(src, base, version: int) -> float:
    """Copy ``src`` to ``base/.tmp-<version>`` and rename it to ``base/<version>``; returns the rename time."""
    temp = base / f".tmp-{version}"
    shutil.copytree(src, temp)
    temp.rename(base / str(version))
    return time.monotonic()


def _load_seconds(logs: str, version: int) -> float:
    match = re.search(rf"Successfully loaded servable version {{name: default version: {version}}} in ([0-9.]+) s", logs)
    assert match, f"no load line for version {version} in the server log:\n{logs[-3000:]}"
    return float(match.group(1))


def _status(server):
    return requests.get(f"{server.rest_url}/v1/models/default", timeout=10).json()["model_version_status"]


def _wait_status(server, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = _status(server)
        if predicate(statuses):
            return statuses
        time.sleep(0.1)
    pytest.fail(f"status never reached the expected form; last: {statuses}")


def test_hot_swap_and_broken_version_under_load(bundled_server, tfs_testdata, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    _drop_version(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", base, 1)  # y = x/2 + 2
    server = bundled_server([f"--model_base_path={base}", f"--file_system_poll_wait_seconds={POLL_S}",
                             "--max_num_load_retries=0"])
    client = LoadClient(f"{server.rest_url}/v1/models/default:predict")
    client.start()
    try:
        assert client.first_answer(2.5, after=0.0, timeout=10) is not None

        # A new version (y = x/2 + 3): served within one poll plus its load time, nothing fails.
        renamed = _drop_version(tfs_testdata / "saved_model_half_plus_three" / "00000123", base, 2)
        served = client.first_answer(3.5, after=renamed, timeout=POLL_S + MAX_LOAD_S)
        assert served is not None, f"version 2 never served; failures: {client.failures[:3]}"
        statuses = _wait_status(server, lambda s: [x["state"] for x in s] == ["AVAILABLE", "END"], 10)
        assert statuses[1] == {"version": "1", "state": "END", "status": {"error_code": "OK", "error_message": ""}}
        load_s = _load_seconds(server.logs(), 2)
        # 0.5 s of slack for request round trips and thread scheduling on a busy machine.
        assert served - renamed <= POLL_S + load_s + 0.5, (served - renamed, load_s)
        swap_done = time.monotonic()
        time.sleep(2 * POLL_S)
        assert all(v == 3.5 for t, v in client.answers if t > swap_done + POLL_S)

        # A broken version: reported as END with its error, version 2 keeps serving.
        broken_at = _drop_version(tfs_testdata / "bad_half_plus_two" / "00000123", base, 3)
        statuses = _wait_status(server, lambda s: s[0]["version"] == "3" and s[0]["state"] == "END", 10 + POLL_S)
        assert statuses[0]["status"]["error_code"] == "NOT_FOUND"
        assert "SavedModel file does not exist" in statuses[0]["status"]["error_message"]
        assert statuses[1]["version"] == "2" and statuses[1]["state"] == "AVAILABLE"
        time.sleep(3 * POLL_S)  # further polls must not retry or unload anything
        assert _status(server)[:2] == statuses[:2]
        count_before = len(client.answers)
        time.sleep(0.5)
        assert len(client.answers) > count_before
        assert all(v == 3.5 for t, v in client.answers if t > broken_at)
    finally:
        client.stop()
    assert client.failures == []
    assert len(client.answers) > 20
    assert server.stop() == 0  # SIGTERM ends the server cleanly
    assert "Server stopped" in server.logs()


def test_removed_version_unloads_and_older_one_takes_over(bundled_server, tfs_testdata, tmp_path):
    """With policy ``latest``, deleting the newest version unloads it and the older one is served again."""
    base = tmp_path / "base"
    base.mkdir()
    _drop_version(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", base, 1)
    _drop_version(tfs_testdata / "saved_model_half_plus_three" / "00000123", base, 2)
    server = bundled_server([f"--model_base_path={base}", f"--file_system_poll_wait_seconds={POLL_S}"])
    assert [s["version"] for s in _status(server) if s["state"] == "AVAILABLE"] == ["2"]
    shutil.rmtree(base / "2")
    statuses = _wait_status(server, lambda s: [(x["version"], x["state"]) for x in s] == [("2", "END"), ("1", "AVAILABLE")],
                            MAX_LOAD_S)
    assert statuses[0]["status"]["error_code"] == "OK"
    response = requests.post(f"{server.rest_url}/v1/models/default:predict", json={"instances": [1.0]}, timeout=10)
    assert response.json() == {"predictions": [2.5]}
