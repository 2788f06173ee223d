"""The up-front checks against a real SeaweedFS: each bad location refused by name, nothing left behind."""

from __future__ import annotations

import pytest

from servegate.object_store import (AccessDenied, EndpointUnreachable, NestedStore, NoConditionalWrites,
                                    NoSuchBucket, ObjectModelStore, S3Location)
from servegate.object_store import versions as v
from tests.object_store.seaweed import READER


class IgnoresConditions:
    """A real client whose writes drop If-None-Match / If-Match, as a store without conditional writes does."""

    def __init__(self, client):
        self._client = client

    def put_object(self, **kwargs):
        kwargs.pop("IfNoneMatch", None)
        kwargs.pop("IfMatch", None)
        return self._client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def _keys(seaweed, location):
    return v.list_keys(seaweed.client(), location, location.prefix + "/")


def test_a_store_that_honours_conditional_writes_opens_and_leaves_nothing(seaweed, s3_location):
    store = ObjectModelStore.open(s3_location, client=seaweed.client())
    assert store.exists is False and _keys(seaweed, s3_location) == []


def test_a_store_that_ignores_conditional_writes_is_refused(seaweed, s3_location):
    with pytest.raises(NoConditionalWrites, match="ignored a create-only write"):
        ObjectModelStore.open(s3_location, client=IgnoresConditions(seaweed.client()))
    assert _keys(seaweed, s3_location) == []


def test_a_missing_bucket_is_named(seaweed):
    with pytest.raises(NoSuchBucket, match="bucket 'no-such-bucket' does not exist"):
        ObjectModelStore.open(S3Location("no-such-bucket", "x"), client=seaweed.client())


def test_read_only_credentials_are_access_denied(seaweed, s3_location):
    with pytest.raises(AccessDenied, match="access denied"):
        ObjectModelStore.open(s3_location, client=seaweed.client(READER))


def test_unknown_credentials_are_access_denied(seaweed, s3_location):
    with pytest.raises(AccessDenied, match="InvalidAccessKeyId"):
        ObjectModelStore.open(s3_location, client=seaweed.client(("nobody", "nothing")))


def test_an_unreachable_endpoint_is_named(seaweed, s3_location):
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", aws_access_key_id="a",
                          aws_secret_access_key="b", region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(EndpointUnreachable, match="127.0.0.1:9 did not answer"):
        ObjectModelStore.open(s3_location, client=client)


def test_a_prefix_inside_another_store_is_refused(s3_store, half_plus_two, seaweed):
    s3_store.stage("m", half_plus_two)  # the outer store now exists
    inner = S3Location(s3_store.location.bucket, s3_store.location.key("models", "m"))
    with pytest.raises(NestedStore, match=f"inside the store {s3_store.root}"):
        ObjectModelStore.open(inner, client=seaweed.client())


def test_a_prefix_holding_other_objects_is_refused(seaweed, s3_location):
    seaweed.client().put_object(Bucket=s3_location.bucket, Key=s3_location.key("data.csv"), Body=b"a,b")
    with pytest.raises(NestedStore, match="not a servegate store"):
        ObjectModelStore.open(s3_location, client=seaweed.client())
