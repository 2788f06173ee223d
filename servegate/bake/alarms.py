"""The bake's alarms: the bake window against absolute limits and against the window before promotion.

:func:`evaluate` returns every alarm that fires (empty: healthy so far). An
alarm names itself, says what it saw in one line, and carries its figures
(plain numbers, for the outcome, MLflow and the event payload).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from servegate.bake.metrics import WindowStats
from servegate.bake.settings import BakeSettings


@dataclass
class Alarm:
    name: str      # error_rate | error_rate_vs_before | p95_latency | p95_latency_vs_before | production_unreachable
    message: str
    figures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(stats: WindowStats) -> str:
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(stats.errors_by_status.items()))
    return f"{stats.error_rate:.3f} ({stats.errors} of {stats.requests} requests failed{': ' + by_status if by_status else ''})"


def _error_alarms(before: WindowStats | None, bake: WindowStats, s: BakeSettings) -> list[Alarm]:
    if bake.requests < s.min_requests or bake.error_rate is None:
        return []
    out = []
    figures = {"error_rate": bake.error_rate, "errors": float(bake.errors), "requests": float(bake.requests)}
    if s.max_error_rate is not None and bake.error_rate > s.max_error_rate:
        out.append(Alarm("error_rate", f"error rate {_rate(bake)} > limit {s.max_error_rate}",
                         {**figures, "limit": s.max_error_rate}))
    if (s.max_error_rate_increase is not None and before is not None and before.requests >= s.min_requests
            and bake.error_rate - before.error_rate > s.max_error_rate_increase):
        out.append(Alarm(
            "error_rate_vs_before",
            f"error rate {_rate(bake)} vs {before.error_rate:.3f} before promotion ({before.errors} of "
            f"{before.requests}): up {bake.error_rate - before.error_rate:.3f} > limit {s.max_error_rate_increase}",
            {**figures, "before_error_rate": before.error_rate, "limit": s.max_error_rate_increase}))
    return out


def _latency_alarms(before: WindowStats | None, bake: WindowStats, s: BakeSettings) -> list[Alarm]:
    if bake.latency_count < s.min_requests or bake.p95_ms is None:
        return []
    out = []
    figures = {"p95_ms": bake.p95_ms, "latency_count": float(bake.latency_count)}
    if s.max_p95_ms is not None and bake.p95_ms > s.max_p95_ms:
        out.append(Alarm("p95_latency", f"p95 latency {bake.p95_ms:.1f} ms > limit {s.max_p95_ms} ms",
                         {**figures, "limit": s.max_p95_ms}))
    if (s.max_p95_ratio is not None and before is not None and before.p95_ms
            and before.latency_count >= s.min_requests and bake.p95_ms > s.latency_floor_ms):
        ratio = bake.p95_ms / before.p95_ms
        if ratio > s.max_p95_ratio:
            out.append(Alarm(
                "p95_latency_vs_before",
                f"p95 latency {bake.p95_ms:.1f} ms vs {before.p95_ms:.1f} ms before promotion: "
                f"ratio {ratio:.2f} > limit {s.max_p95_ratio}",
                {**figures, "before_p95_ms": before.p95_ms, "ratio": ratio, "limit": s.max_p95_ratio}))
    return out


def evaluate(before: WindowStats | None, bake: WindowStats, settings: BakeSettings,
             latency: bool = True) -> list[Alarm]:
    """Every alarm ``bake`` fires (``before``: the window before promotion, None when unknown;
    ``latency=False``: the error alarms only)."""
    return _error_alarms(before, bake, settings) + (_latency_alarms(before, bake, settings) if latency else [])
