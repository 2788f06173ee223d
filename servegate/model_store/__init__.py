"""The crash-safe versioned model store (see docs/DESIGN.md "The store").

```python
from servegate.model_store import ModelStore
store = ModelStore(root, retention=3, lock_timeout=30.0)
v = store.stage("mnist", "/tmp/export")        # staging/mnist/<v>
store.promote("mnist", v)                       # production/mnist/<v>, one rename
store.rollback("mnist")                          # production back to the previous version
```
"""

from servegate.model_store.errors import (
    InvalidModelName,
    InvalidVersion,
    LockTimeout,
    NotASavedModel,
    NotEnoughSpace,
    NothingToRollBackTo,
    NotNewerThanProduction,
    StoreError,
    StoreIOError,
    StoreNotWritable,
    UnknownModel,
    UnknownVersion,
    VersionConflict,
)
from servegate.model_store.history import HistoryRecord
from servegate.model_store.layout import AREAS, PRODUCTION, REJECTED, STAGING, check_model_name
from servegate.model_store.savedmodel import (
    SavedModelInfo,
    SignatureInfo,
    TensorSpec,
    check_savedmodel,
    read_signatures,
)
from servegate.model_store.store import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_RETENTION,
    ModelStore,
    RecoveryReport,
    RollbackResult,
    StoreStatus,
)

__all__ = [
    "AREAS",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_RETENTION",
    "PRODUCTION",
    "REJECTED",
    "STAGING",
    "HistoryRecord",
    "InvalidModelName",
    "InvalidVersion",
    "LockTimeout",
    "ModelStore",
    "NotASavedModel",
    "NotEnoughSpace",
    "NothingToRollBackTo",
    "NotNewerThanProduction",
    "RecoveryReport",
    "RollbackResult",
    "SavedModelInfo",
    "SignatureInfo",
    "StoreError",
    "StoreIOError",
    "StoreNotWritable",
    "StoreStatus",
    "TensorSpec",
    "UnknownModel",
    "UnknownVersion",
    "VersionConflict",
    "check_model_name",
    "check_savedmodel",
    "read_signatures",
]
