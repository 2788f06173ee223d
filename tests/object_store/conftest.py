"""A real SeaweedFS on loopback for the session, and a fresh store prefix per test."""

from __future__ import annotations

import uuid

import pytest

from servegate.object_store import ObjectModelStore, S3Location
from tests.object_store.seaweed import Seaweed, start_seaweed

BUCKET = "servegate"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> Seaweed:
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"), buckets=BUCKET)
    yield server
    server.stop()


@pytest.fixture
def s3_location() -> S3Location:
    """A prefix no other test uses."""
    return S3Location(BUCKET, f"stores/{uuid.uuid4().hex[:12]}")


@pytest.fixture
def s3_store(seaweed, s3_location) -> ObjectModelStore:
    return ObjectModelStore.open(s3_location, client=seaweed.client())


@pytest.fixture
def half_plus_two(tfs_testdata):
    """A real SavedModel version directory (TF Serving's test model)."""
    return tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
