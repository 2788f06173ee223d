"""The checks, one module each behind one interface (:class:`.base.Check`), in report order.

- :mod:`.load_time` — time to AVAILABLE against a deadline;
- :mod:`.contract` — the served signature against production's;
- :mod:`.parity` — canary answers against the in-process (golden) answers;
- :mod:`.quality` — figures against labels and thresholds;
- :mod:`.regression` — figures against production's on the same rows;
- :mod:`.sanity` — NaN/Inf and value range;
- :mod:`.distribution` — prediction drift against production (else labels);
- :mod:`.service_level` — latency and errors under a steady load;
- :mod:`.shadow` — production's recorded requests: the candidate's answers against production's;
- :mod:`.metrics` — the figures themselves (MAE, RMSE, accuracy, AUC).
"""

from __future__ import annotations

from servegate.validation.checks import (contract, distribution, load_time, parity, quality, regression, sanity,
                                         service_level, shadow)
from servegate.validation.checks.base import Check, CheckContext, CheckPlan, OutputData, judge

CHECKS: tuple[Check, ...] = (load_time.CHECK, contract.CHECK, parity.CHECK, quality.CHECK, regression.CHECK,
                             sanity.CHECK, distribution.CHECK, service_level.CHECK, shadow.CHECK)

__all__ = ["CHECKS", "Check", "CheckContext", "CheckPlan", "OutputData", "judge"]
