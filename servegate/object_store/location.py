"""``s3://BUCKET/PREFIX``: a store root on S3-compatible object storage, parsed without touching the network."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from servegate.object_store.errors import BadStoreURI

# S3's bucket naming rules (lowercase letters, digits, dots, hyphens; 3-63 characters).
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
SCHEME = "s3://"
#: The commands that take an s3:// store root (the others need a directory and refuse it by name).
OBJECT_STORE_COMMANDS = "servegate deploy, status, rollback, serve and sync"


@dataclass(frozen=True)
class S3Location:
    """A store root in a bucket. ``prefix`` has no leading or trailing slash; "" is the bucket's top."""

    bucket: str
    prefix: str
    source: str = "--store"  # the flag or variable it came from, named in every error about it

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under the store root."""
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return self.uri


def as_s3_uri(location: str | os.PathLike[str]) -> str | None:
    """``location`` as an ``s3://`` URI when it is one, also after ``Path()`` folded its ``//`` (a
    command-line option typed as a path turns ``s3://b/p`` into ``s3:/b/p``); else None."""
    text = os.fspath(location)
    match = re.match(r"(?i)s3:/+", text)
    return SCHEME + text[match.end():] if match else None


def parse_s3_uri(text: str, source: str = "--store") -> S3Location:
    """``s3://BUCKET[/PREFIX]`` as an :class:`S3Location`; :class:`BadStoreURI` (exit 2) names ``source``."""
    if not text.lower().startswith(SCHEME):
        raise BadStoreURI(f"{source}: {text!r} is not an s3:// URI; expected s3://BUCKET/PREFIX", subject=source)
    rest = text[len(SCHEME):]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise BadStoreURI(f"{source}: bucket {bucket!r} in {text!r} is not a valid S3 bucket name; expected "
                          "s3://BUCKET/PREFIX with 3-63 lowercase letters, digits, dots or hyphens", subject=source)
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(part in ("", ".", "..") for part in parts):
        raise BadStoreURI(f"{source}: prefix {prefix!r} in {text!r} has an empty, '.' or '..' part; expected "
                          "s3://BUCKET/a/b", subject=source)
    return S3Location(bucket, "/".join(parts), source)
