"""What the object store keeps as JSON: a version's claim, its manifest, a model's production state."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

#: History records kept in production.json (older ones drop off; the versions' manifests remain).
HISTORY_LIMIT = 200


@dataclass(frozen=True)
class FileEntry:
    path: str        # relative to the version's root, "/"-separated
    size: int
    sha256: str


@dataclass
class Manifest:
    """Written last, create-only: a version exists for readers only once this is complete.

    ``abandoned`` marks a tombstone the cleaner wrote in its place after the uploader's lease expired:
    that version number is then never used (the late uploader's own manifest write gets a 412).
    ``deleted_at`` marks a version that left production and whose files were deleted from the bucket
    (:mod:`~servegate.object_store.prune`): the record of what it was stays, the version no longer exists."""

    model: str
    version: int
    files: list[FileEntry] = field(default_factory=list)
    created_at: str = ""
    run_id: str | None = None
    abandoned: bool = False
    deleted_at: str | None = None

    @property
    def exists(self) -> bool:
        """A version a reader may list, download or promote: neither a tombstone nor deleted."""
        return not self.abandoned and self.deleted_at is None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        files = [FileEntry(**f) for f in raw.pop("files", [])]
        return cls(files=files, **raw)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class Claim:
    """Who took a version number, and until when nobody may clean its upload away."""

    version: int
    holder: dict
    claimed_at: float
    lease_seconds: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Claim:
        return cls(**json.loads(data))


@dataclass
class Production:
    """A model's production state, changed only by compare-and-swap.

    ``served`` is the stack of versions promoted and not rolled back, oldest first: the last is what
    production serves, the ones below are where a rollback goes."""

    model: str
    served: list[int] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)   # version -> why it left production
    history: list[dict] = field(default_factory=list)
    generation: int = 0

    @property
    def serving(self) -> int | None:
        return self.served[-1] if self.served else None

    def record(self, entry: dict) -> None:
        self.history = (self.history + [entry])[-HISTORY_LIMIT:]
        self.generation += 1

    def to_json(self) -> bytes:
        data = asdict(self)
        data["serving"] = self.serving  # for readers (the sync, people) that want only this
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Production:
        raw = json.loads(data)
        raw.pop("serving", None)
        return cls(**raw)
