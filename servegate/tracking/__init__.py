"""MLflow tracking: one run per deploy attempt, the registry mirroring the store.

See :mod:`servegate.tracking.tracker` for the life cycle.
"""

from servegate.tracking.tracker import CHALLENGER, CHAMPION, RegisteredVersion, Tracker, check_tracking_server, metric_key

__all__ = ["CHALLENGER", "CHAMPION", "RegisteredVersion", "Tracker", "check_tracking_server", "metric_key"]
