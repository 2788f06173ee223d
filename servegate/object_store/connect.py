"""Open a store root in a bucket: the S3 client the standard AWS way, then the checks that refuse a bad
location before anything is written (credentials, endpoint, bucket, access, nesting, conditional writes).

Credentials and endpoint come from boto3's own chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE`` and ``~/.aws/config``, ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for an
S3-compatible server. Every failure is a named :class:`ObjectStoreError` (exit 2).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from servegate.object_store.errors import (AccessDenied, EndpointUnreachable, MissingCredentials, NestedStore,
                                           NoConditionalWrites, NoSuchBucket, ObjectStoreError)
from servegate.object_store.location import S3Location

#: The object that marks a prefix as a servegate store (written by the first change to it).
MARKER = "servegate-store.json"
PROBE_DIR = ".servegate-probe"
_CREDENTIAL_HELP = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile in "
                    "~/.aws/credentials")


def error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_precondition_failed(exc: Exception) -> bool:
    status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 412 or error_code(exc) in ("PreconditionFailed", "412")


def is_missing(exc: Exception) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def endpoint_of(client: Any) -> str:
    return str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "the AWS default endpoint")


def make_client() -> Any:
    """An S3 client from the standard AWS settings; :class:`MissingCredentials` when there are none."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session()
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that is not there
        raise MissingCredentials(f"AWS credentials could not be read: {exc}; {_CREDENTIAL_HELP}",
                                 subject="AWS_PROFILE") from exc
    if credentials is None:
        raise MissingCredentials(f"no AWS credentials found for the object store; {_CREDENTIAL_HELP}",
                                 subject="AWS_ACCESS_KEY_ID")
    region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    return session.client("s3", region_name=region, config=config)


def translate(exc: Exception, location: S3Location, client: Any, doing: str) -> ObjectStoreError:
    """A botocore error met while ``doing`` something to ``location`` as the named error a user can act on."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    where = f"{location.source} {location.uri}"
    if isinstance(exc, NoCredentialsError):
        return MissingCredentials(f"{where}: no AWS credentials found; {_CREDENTIAL_HELP}",
                                  subject="AWS_ACCESS_KEY_ID")
    if isinstance(exc, EndpointConnectionError) or type(exc).__name__ in ("ConnectTimeoutError",
                                                                         "ReadTimeoutError"):
        return EndpointUnreachable(
            f"{where}: the S3 endpoint {endpoint_of(client)} did not answer while {doing} ({exc}); start the "
            "object store or set AWS_ENDPOINT_URL to the address it listens on", subject="AWS_ENDPOINT_URL")
    code = error_code(exc)
    if code in ("NoSuchBucket",) or (code == "404" and doing == "checking the bucket"):
        return NoSuchBucket(f"{where}: bucket {location.bucket!r} does not exist at {endpoint_of(client)}; "
                            "create it first (e.g. `aws s3 mb s3://BUCKET`) or fix the URI", subject=location.source)
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden",
                "InvalidToken", "ExpiredToken"):
        return AccessDenied(
            f"{where}: access denied while {doing} ({code}); the credentials must be valid and allowed to read, "
            f"write and delete objects under s3://{location.bucket}/{location.prefix}", subject=location.source)
    return ObjectStoreError(f"{where}: the object store failed while {doing}: {exc}", subject=location.source)


def check_bucket(client: Any, location: S3Location) -> None:
    """The bucket exists and the credentials may list under the prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=location.bucket)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == "403":
            # HEAD has no body: list to learn whether the key is unknown, the signature wrong or access denied
            try:
                client.list_objects_v2(Bucket=location.bucket, Prefix=location.key(""), MaxKeys=1)
            except (ClientError, BotoCoreError) as detail:
                raise translate(detail, location, client, "listing the prefix") from detail
        raise translate(exc, location, client, "checking the bucket") from exc


def check_not_nested(client: Any, location: S3Location) -> bool:
    """Refuse a prefix inside another store; True when ``location`` already is a store."""
    parts = location.prefix.split("/") if location.prefix else []
    for depth in range(len(parts)):
        outer = S3Location(location.bucket, "/".join(parts[:depth]), location.source)
        if object_exists(client, location, outer.key(MARKER)):
            raise NestedStore(
                f"{location.source} {location.uri}: this prefix lies inside the store {outer.uri}; use that store's "
                f"root, or a prefix outside it (e.g. s3://{location.bucket}/another-store)", subject=location.source)
    if object_exists(client, location, location.key(MARKER)):
        return True
    listing = call(client, location, "listing the prefix", "list_objects_v2", Bucket=location.bucket,
                   Prefix=location.key("") + "/" if location.prefix else "", MaxKeys=1)
    if listing.get("KeyCount", 0):
        raise NestedStore(
            f"{location.source} {location.uri}: the prefix holds objects that are not a servegate store's (no "
            f"{MARKER}); choose an empty prefix", subject=location.source)
    return False


def probe_conditional_writes(client: Any, location: S3Location) -> None:
    """Write one probe key create-only twice: the second write must be refused with 412. A store that
    ignores ``If-None-Match`` would let two workers claim one version and every compare-and-swap win."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = location.key(PROBE_DIR, uuid.uuid4().hex)
    call(client, location, "probing conditional writes", "put_object", Bucket=location.bucket, Key=key,
         Body=b"probe", IfNoneMatch="*")
    try:
        client.put_object(Bucket=location.bucket, Key=key, Body=b"probe again", IfNoneMatch="*")
    except ClientError as exc:
        if not is_precondition_failed(exc):
            raise translate(exc, location, client, "probing conditional writes") from exc
    except BotoCoreError as exc:
        raise translate(exc, location, client, "probing conditional writes") from exc
    else:
        raise NoConditionalWrites(
            f"{location.source} {location.uri}: the object store at {endpoint_of(client)} ignored a create-only "
            "write (If-None-Match: *): a second write of the probe key succeeded. servegate's version numbers "
            "and promotions rely on conditional writes; use a store that honours them (Amazon S3, MinIO, R2, "
            "Ceph RGW, SeaweedFS, GCS's S3 API)", subject=location.source)
    finally:
        try:
            client.delete_object(Bucket=location.bucket, Key=key)
        except (ClientError, BotoCoreError):
            pass  # a leftover probe key is harmless; the next open's probe uses a new one


def call(client: Any, location: S3Location, doing: str, method: str, **kwargs: Any) -> dict:
    """``client.<method>(**kwargs)`` with botocore's errors translated."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, method)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, location, client, doing) from exc


def object_exists(client: Any, location: S3Location, key: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_object(Bucket=location.bucket, Key=key)
        return True
    except (ClientError, BotoCoreError) as exc:
        if is_missing(exc):
            return False
        raise translate(exc, location, client, f"reading {key}") from exc


def preflight(client: Any, location: S3Location) -> bool:
    """Every check, in the order that names the first thing a user must fix; True when the store exists."""
    check_bucket(client, location)
    exists = check_not_nested(client, location)
    probe_conditional_writes(client, location)
    return exists
