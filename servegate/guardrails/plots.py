"""The bake's picture for the report: error rate and p95 latency before promotion and during the bake.

``bake.png``: two panels over the seconds since the bake started, one point
per evaluation interval (the new version), beside a dashed line for the
window before promotion (the previous version) and a dotted line for each
absolute limit; the alarm that fired, if any, is marked where it fired.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any



def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, xs: list[float], ys: list[float | None], before: float | None, limit: float | None,
           label: str, alarm_at: float | None) -> None:
    points = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="tab:orange", label="after promotion")
    if before is not None:
        ax.axhline(before, color="tab:blue", linestyle="--", label="before promotion")
    if limit is not None:
        ax.axhline(limit, color="tab:red", linestyle=":", label="limit")
    if alarm_at is not None:
        ax.axvline(alarm_at, color="tab:red", linewidth=2, alpha=0.5, label="alarm, rollback")
    ax.set_ylabel(label)
    ax.set_xlabel("seconds since the bake started")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)


def bake_plot(result: dict[str, Any], limits: dict[str, float | None], out_dir: Path) -> Path:
    """Draw ``bake.png`` in ``out_dir`` from a :class:`~servegate.guardrails.baking.BakeResult` dict."""
    plt = _pyplot()
    ticks = result.get("ticks") or []
    xs = [t["elapsed_s"] for t in ticks]
    before = result.get("before") or {}
    alarm = result.get("alarm")
    alarm_at = (alarm or {}).get("figures", {}).get("elapsed_s")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    _panel(top, xs, [t["interval"]["error_rate"] for t in ticks], before.get("error_rate"),
           limits.get("max_error_rate"), "error rate (per interval)", alarm_at)
    _panel(bottom, xs, [t["interval"]["p95_ms"] for t in ticks], before.get("p95_ms"),
           limits.get("max_p95_ms"), "p95 latency, ms (per interval)", alarm_at)
    verdict = f"alarm {alarm['name']}: production rolled back" if alarm else "passed"
    top.set_title(f"bake ({result.get('mode')}, {result.get('duration_s'):.0f} s): {verdict}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bake.png"
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
