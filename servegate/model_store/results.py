"""What the store's calls return: status, rollback result, recovery report (plain dataclasses, ``to_dict``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from servegate.model_store.history import HistoryRecord
from servegate.model_store.layout import PRODUCTION, REJECTED, STAGING


@dataclass
class StoreStatus:
    model: str
    root: str
    exists: bool                          # False: the store holds nothing for this model
    base_paths: dict[str, str]            # area -> base path (production's is what TF Serving watches)
    versions: dict[str, list[int]]        # area -> versions, ascending
    serving_version: int | None           # highest in production (TF Serving's "latest" policy)
    rejected_reasons: dict[int, str]      # rejected version -> reason
    next_version: int                     # what the next stage would get (at least)
    history: list[HistoryRecord]          # the most recent transitions, oldest first
    lock_holder: dict | None = None       # who holds the model lock now, if anyone
    leftovers: list[str] = field(default_factory=list)  # temp entries awaiting recovery or in progress

    @property
    def production(self) -> list[int]:
        return self.versions[PRODUCTION]

    @property
    def staging(self) -> list[int]:
        return self.versions[STAGING]

    @property
    def rejected(self) -> list[int]:
        return self.versions[REJECTED]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["rejected_reasons"] = {str(k): v for k, v in self.rejected_reasons.items()}
        data["history"] = [r.to_dict() for r in self.history]
        return data


@dataclass
class RollbackResult:
    model: str
    from_version: int            # what production served before
    to_version: int              # what production serves now
    rejected: list[int]          # versions moved from production to rejected/ ("rolled back"), newest first
    production_path: str         # the base path
    changed: bool = True         # False: production already served to_version

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RecoveryReport:
    model: str
    actions: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.actions)

    def to_dict(self) -> dict:
        return asdict(self)


def fmt_versions(versions) -> str:
    """``"1, 2, 5"`` (ascending), or ``"none"``: how messages list versions."""
    versions = sorted(versions)
    return ", ".join(map(str, versions)) if versions else "none"
