"""Where everything lives in the store, and the checks that keep names inside it.

```
<root>/staging/<model>/<version>/      candidates being validated
<root>/production/<model>/<version>/   the base path TensorFlow Serving watches
<root>/rejected/<model>/<version>/     rejected, rolled-back and retired versions
<root>/rejected/<model>/<version>.reason.json   why (beside the version)
<root>/.servegate/<model>/             lock, holder.json, counter, history.jsonl, inflight/,
                                       intent-<operation>-<version>-<token>.json (a move in progress)
```

Each area may live elsewhere (``areas={"production": "/mnt/models"}``), for
example on another filesystem than staging; the metadata always lives under
the root.

Temporary directories are dot-named siblings of the versions
(``.servegate-tmp-<kind>-<version>-<token>``): TensorFlow Serving only looks at
entries whose names are numbers, so it never sees a half-written version.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from servegate.model_names import MAX_MODEL_NAME_LENGTH, MODEL_NAME_PATTERN, MODEL_NAME_RULE, is_model_name
from servegate.model_store.errors import InvalidModelName, InvalidVersion

STAGING = "staging"
PRODUCTION = "production"
REJECTED = "rejected"
AREAS: tuple[str, ...] = (STAGING, PRODUCTION, REJECTED)

META_DIR = ".servegate"
LOCK_FILE = "lock"
HOLDER_FILE = "holder.json"
COUNTER_FILE = "counter"
HISTORY_FILE = "history.jsonl"
INFLIGHT_DIR = "inflight"

#: Prefix of every temporary entry the store creates beside versions.
TMP_PREFIX = ".servegate-tmp-"
#: Prefix of temporary files written by :func:`fsutil.write_atomic` (in the metadata dir).
ATOMIC_TMP_PREFIX = ".tmp-"
#: temp files of reason files, written atomically (under the lock) beside the versions in rejected/
REASON_TMP_PREFIX = TMP_PREFIX + "reason-"
REASON_SUFFIX = ".reason.json"
#: A move's write-ahead intent in the metadata dir: the history line it will append (see ``intents``).
INTENT_PREFIX = "intent-"
INTENT_SUFFIX = ".json"

_VERSION_RE = re.compile(r"[0-9]+")
_TMP_RE = re.compile(re.escape(TMP_PREFIX) + r"(?P<kind>[a-z]+)-(?P<version>[0-9]+)-(?P<token>[0-9]+-[0-9a-f]+)")
_REASON_RE = re.compile(r"(?P<version>[0-9]+)" + re.escape(REASON_SUFFIX))

# TensorFlow Serving reads version directory names as int64.
MAX_VERSION = 2**63 - 1


def _shown(name: str) -> str:
    if len(name) > 40:
        return f"{name[:40]!r}... ({len(name)} characters)"
    return repr(name)


def check_model_name(name: object) -> str:
    """Return ``name`` when it is a safe model name, else raise :class:`InvalidModelName`.

    Allowed: ``[A-Za-z0-9][A-Za-z0-9_.-]*``, no ``..``, at most
    :data:`MAX_MODEL_NAME_LENGTH` characters. Such a name is one path
    component that is neither ``.`` nor ``..``, so it cannot leave the root.
    """
    if is_model_name(name):
        return name
    expected = f"expected {MODEL_NAME_RULE}"
    if not isinstance(name, str):
        raise InvalidModelName(f"model name {name!r} is not a string; {expected}")
    if not name:
        raise InvalidModelName(f"model name is empty; {expected}")
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise InvalidModelName(f"model name {_shown(name)} is too long; {expected}")
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9_.-]", c)})
        what = f"contains {', '.join(repr(c) for c in bad)}" if bad else f"starts with {name[0]!r}"
        raise InvalidModelName(f"model name {_shown(name)} {what}; {expected}")
    raise InvalidModelName(f"model name {_shown(name)} contains '..'; {expected}")


def check_version(version: object, *, what: str = "version") -> int:
    """Return ``version`` as an int when it is a positive integer TF Serving can read."""
    if isinstance(version, bool) or not isinstance(version, int):
        if isinstance(version, str) and _VERSION_RE.fullmatch(version.strip()):
            version = int(version.strip())
        else:
            raise InvalidVersion(f"{what} {version!r} is not a positive integer")
    if not 1 <= version <= MAX_VERSION:
        raise InvalidVersion(f"{what} {version} is out of range; expected 1 to {MAX_VERSION}")
    return version


def parse_version_name(entry: str) -> int | None:
    """The version number a directory entry stands for, as TF Serving reads it, or None."""
    if _VERSION_RE.fullmatch(entry):
        value = int(entry)
        if 0 <= value <= MAX_VERSION:
            return value
    return None


@dataclass(frozen=True)
class TmpName:
    kind: str
    version: int
    token: str


def new_token() -> str:
    """A token unique to this process and call: ``<pid>-<random hex>``."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def tmp_name(kind: str, version: int, token: str) -> str:
    return f"{TMP_PREFIX}{kind}-{version}-{token}"


def parse_tmp_name(entry: str) -> TmpName | None:
    match = _TMP_RE.fullmatch(entry)
    if not match:
        return None
    return TmpName(match["kind"], int(match["version"]), match["token"])


def reason_file_name(version: int) -> str:
    return f"{version}{REASON_SUFFIX}"


def parse_reason_file_name(entry: str) -> int | None:
    match = _REASON_RE.fullmatch(entry)
    return int(match["version"]) if match else None


class Layout:
    """Paths of one store. Pure path arithmetic: nothing here touches the disk."""

    def __init__(self, root: str | os.PathLike[str], areas: dict[str, str | os.PathLike[str]] | None = None):
        self.root = Path(root).expanduser().absolute()
        overrides = dict(areas or {})
        unknown = sorted(set(overrides) - set(AREAS))
        if unknown:
            raise ValueError(f"unknown store area(s) {unknown}; expected some of {list(AREAS)}")
        self.area_roots: dict[str, Path] = {
            area: Path(overrides[area]).expanduser().absolute() if area in overrides else self.root / area
            for area in AREAS
        }

    def check_area(self, area: str) -> str:
        if area not in AREAS:
            raise ValueError(f"unknown store area {area!r}; expected one of {list(AREAS)}")
        return area

    def base_path(self, area: str, name: str) -> Path:
        """``<area>/<model>``: for production, the base path TF Serving watches."""
        return self.area_roots[self.check_area(area)] / check_model_name(name)

    def meta_root(self) -> Path:
        return self.root / META_DIR

    def meta_dir(self, name: str) -> Path:
        return self.meta_root() / check_model_name(name)

    def lock_file(self, name: str) -> Path:
        return self.meta_dir(name) / LOCK_FILE

    def holder_file(self, name: str) -> Path:
        return self.meta_dir(name) / HOLDER_FILE

    def counter_file(self, name: str) -> Path:
        return self.meta_dir(name) / COUNTER_FILE

    def history_file(self, name: str) -> Path:
        return self.meta_dir(name) / HISTORY_FILE

    def inflight_dir(self, name: str) -> Path:
        return self.meta_dir(name) / INFLIGHT_DIR

    def inflight_marker(self, name: str, token: str) -> Path:
        return self.inflight_dir(name) / token

    def intent_file(self, name: str, operation: str, version: int, token: str) -> Path:
        return self.meta_dir(name) / f"{INTENT_PREFIX}{operation}-{version}-{token}{INTENT_SUFFIX}"
