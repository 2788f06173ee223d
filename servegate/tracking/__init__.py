"""MLflow tracking: one run per deploy attempt, the registry mirroring the store.

See :mod:`servegate.tracking.tracker` for the life cycle, and
:mod:`servegate.tracking.conventions` for how runs read in the MLflow 3 UI.
"""

from servegate.tracking.registry import CHALLENGER, CHAMPION, RegisteredVersion
from servegate.tracking.stores import check_tracking_server, metric_key
from servegate.tracking.tracker import Tracker

__all__ = ["CHALLENGER", "CHAMPION", "RegisteredVersion", "Tracker", "check_tracking_server", "metric_key"]
