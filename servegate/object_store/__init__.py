"""The model store on S3-compatible object storage (``--store s3://BUCKET/PREFIX``).

- :mod:`location`: the parsed URI (:class:`S3Location`), no network.
- :mod:`connect`: the client from the standard AWS settings and the up-front checks.
- :mod:`versions`: claims, uploads, manifests, cleanup of dead uploads.
- :mod:`production`: production.json by compare-and-swap.
- :mod:`store`: :class:`ObjectModelStore`, the facade commands use.
"""

from servegate.object_store.errors import (AccessDenied, BadStoreURI, ConcurrentChange, EndpointUnreachable,
                                           ManifestMismatch, MissingCredentials, NestedStore, NoConditionalWrites,
                                           NoSuchBucket, ObjectStoreError)
from servegate.object_store.location import S3Location, parse_s3_uri
from servegate.object_store.store import ObjectModelStore, ObjectRollback, ObjectStoreStatus

__all__ = ["AccessDenied", "BadStoreURI", "ConcurrentChange", "EndpointUnreachable", "ManifestMismatch",
           "MissingCredentials", "NestedStore", "NoConditionalWrites", "NoSuchBucket", "ObjectStoreError",
           "S3Location", "parse_s3_uri", "ObjectModelStore", "ObjectRollback", "ObjectStoreStatus"]
