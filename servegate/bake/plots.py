"""The bake's picture for the report: error rate and p95 latency before promotion and during the bake.

``bake.png``: two panels (error rate, p95 latency) over the seconds since
the bake started, one point per evaluation interval (the new version), the
window before promotion (the previous version) drawn over its length left of
0, a dotted line for each absolute limit within the scale, and the alarm
that fired, if any, where it fired; the x axis spans the whole bake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any



def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, xs: list[float], ys: list[float | None], before: float | None, before_s: float,
           limit: float | None, label: str, alarm_at: float | None, limit_always: bool = False) -> None:
    points = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="tab:orange", label="new version")
    if before is not None:  # the window before promotion, drawn over its own length left of 0
        ax.plot([-before_s, 0], [before, before], color="tab:blue", linewidth=3, label="before promotion")
        ax.axhline(before, color="tab:blue", linestyle="--", linewidth=0.8)
    values = [y for _, y in points] + ([before] if before is not None else [])
    top = max(values, default=0.0)
    shown = limit is not None and (limit_always or limit <= 3 * top)  # a limit far above would flatten the data
    if shown:
        ax.axhline(limit, color="tab:red", linestyle=":", label=f"limit {limit:g}")
    elif limit is not None:
        label += f" (limit {limit:g}, off the scale)"
    if alarm_at is not None:
        ax.axvline(alarm_at, color="tab:red", linewidth=2, alpha=0.5, label="alarm: rolled back")
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set_ylim(bottom=0, top=max(top * 1.2, limit if shown else 0.0, 1e-3) * 1.05)
    ax.set_ylabel(label)
    ax.set_xlabel("seconds since the bake started")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)


def bake_plot(result: dict[str, Any], limits: dict[str, float | None], out_dir: Path) -> Path:
    """Draw ``bake.png`` in ``out_dir`` from a :class:`~servegate.bake.baking.BakeResult` dict."""
    plt = _pyplot()
    ticks = result.get("ticks") or []
    xs = [t["elapsed_s"] for t in ticks]
    before = result.get("before") or {}
    alarm = result.get("alarm")
    alarm_at = (alarm or {}).get("figures", {}).get("elapsed_s")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    before_s = float(before.get("seconds") or result.get("interval_s") or 1.0)
    _panel(top, xs, [t["interval"]["error_rate"] for t in ticks], before.get("error_rate"), before_s,
           limits.get("max_error_rate"), "error rate", alarm_at, limit_always=True)
    _panel(bottom, xs, [t["interval"]["p95_ms"] for t in ticks], before.get("p95_ms"), before_s,
           limits.get("max_p95_ms"), "p95 latency, ms", alarm_at)
    bottom.set_xlim(-before_s * 1.05, max([result.get("duration_s") or 0.0] + xs) * 1.02)
    verdict = (f"alarm {alarm['name']}: production rolled back" if alarm
               else "inconclusive (too few requests to judge)" if result.get("verdict") == "inconclusive" else "passed")
    top.set_title(f"bake ({result.get('mode')}, {result.get('duration_s'):.0f} s): {verdict}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bake.png"
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
