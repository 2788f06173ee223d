"""Production guardrails after a promotion: the bake (watch production, alarm, roll back).

::

    from servegate.bake import BakeSettings, MetricsSource, Probe, measure_before, run_bake
    before = measure_before(MetricsSource(metrics_url, name), seconds=5)
    result = run_bake(MetricsSource(metrics_url, name), BakeResult("metrics", metrics_url, 60, 5, time.time()),
                      before, BakeSettings(duration_s=60))
    result.verdict            # "passed" | "alarm" | "inconclusive" (too few requests: result.not_judged says)
    # result.alarm = {"name", "message", "figures"}

Modules: ``settings`` (the config's ``bake:`` section), ``metrics`` (TF
Serving's Prometheus page -> snapshots -> windows), ``probe`` (reference rows
at a steady pace where there are no metrics), ``alarms``, ``baking`` (the
loop), ``plots`` (``bake.png``). The deploy's steps are in
:mod:`servegate.deploy.bake`.
"""

from importlib import import_module
from typing import Any

# Loaded on first use: the config model imports ``settings`` and must stay light (no NumPy, no requests).
_WHERE = {
    "Alarm": "alarms", "evaluate": "alarms", "BakeResult": "baking", "MetricsSource": "baking",
    "measure_before": "baking", "run_bake": "baking", "MetricsUnavailable": "metrics", "Snapshot": "metrics",
    "WindowStats": "metrics", "parse": "metrics", "scrape": "metrics", "window": "metrics", "Probe": "probe",
    "BakeSettings": "settings",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
