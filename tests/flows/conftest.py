"""Fixtures for the flow tests: the demo's trained variants and one MLflow SQLite store, each built once per
session (the Prefect test server, ``prefect_harness``, is in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory) -> dict:
    """The demo variants trained once: ``{variant: DemoModelFiles}``."""
    from servegate.demo import model as demo

    out = tmp_path_factory.mktemp("demo-models")
    data = demo.load_data()
    return {v: demo.write_variant(v, out, data) for v in demo.VARIANTS}


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
