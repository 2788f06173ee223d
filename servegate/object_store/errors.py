"""The object store's errors: each a :class:`~servegate.errors.StoreError` (exit 2), each naming what is
wrong, where the store location came from, and what to do."""

from __future__ import annotations

from servegate.errors import StoreError


class ObjectStoreError(StoreError):
    """An object-store location or operation refused."""


class BadStoreURI(ObjectStoreError):
    """An ``s3://`` URI that cannot name a store root."""


class MissingCredentials(ObjectStoreError):
    """No AWS credentials were found the standard way (variables, profile, config files)."""


class AccessDenied(ObjectStoreError):
    """The credentials were refused, or they may not read or write under the prefix."""


class NoSuchBucket(ObjectStoreError):
    """The bucket does not exist at the endpoint."""


class EndpointUnreachable(ObjectStoreError):
    """Nothing answers at the S3 endpoint."""


class NestedStore(ObjectStoreError):
    """The prefix lies inside another store, or holds objects that are not a store's."""


class NoConditionalWrites(ObjectStoreError):
    """The object store ignored ``If-None-Match: *``: every claim and compare-and-swap would succeed."""


class ConcurrentChange(ObjectStoreError):
    """A compare-and-swap kept losing to other writers (re-read and retried until the attempts ran out)."""


class ManifestMismatch(ObjectStoreError):
    """A downloaded or listed file differs from the version's manifest (size or sha256)."""
