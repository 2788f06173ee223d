"""MLflow tracking: one run per deploy attempt, the registry mirroring the store.

See :mod:`servegate.tracking.tracker` for the life cycle, and
:mod:`servegate.tracking.conventions` for how runs read in the MLflow 3 UI.
"""

import os

# MLflow's usage telemetry, on by default, is none of a deploy's work: its thread fetches a config from an
# outside host and, when that fails (no internet on most serving hosts), pops an environment variable while
# other threads may be iterating os.environ (requests reads proxies that way), which fails that thread's
# MLflow call with a KeyError. Every process of ours that imports MLflow comes through this package first
# (the CLI, its helper, a worker's flow run). A value the user set is kept.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from servegate.tracking.registry import CHALLENGER, CHAMPION, RegisteredVersion
from servegate.tracking.stores import check_tracking_server, metric_key
from servegate.tracking.tracker import Tracker

__all__ = ["CHALLENGER", "CHAMPION", "RegisteredVersion", "Tracker", "check_tracking_server", "metric_key"]
