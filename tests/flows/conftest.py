"""Fixtures for the flow tests: the demo's trained variants, a Prefect test
server, and one MLflow SQLite store, each built once per session."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory) -> dict:
    """The demo variants trained once: ``{variant: DemoModelFiles}``."""
    from servegate.demo import model as demo

    out = tmp_path_factory.mktemp("demo-models")
    data = demo.load_data()
    return {v: demo.write_variant(v, out, data) for v in demo.VARIANTS}


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and database for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL on which nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
