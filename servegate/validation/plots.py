"""The report's pictures, as PNG files (matplotlib, Agg backend: no display needed).

- ``predicted_vs_expected.png``: canary prediction against the label (or the
  golden prediction when there are no labels), with the y = x line;
- ``residuals.png`` (regression): histogram of prediction - expected, or
  ``confusion_matrix.png`` (classification);
- ``latency.png``: histogram of per-request latency with p50/p95/p99 marked.

Large references are subsampled (a fixed seed) for the scatter plot so that
drawing stays fast; histograms use every row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCATTER_POINTS = 5000


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def predicted_vs_expected(pred: np.ndarray, expected: np.ndarray, what: str, path: Path) -> Path:
    plt = _pyplot()
    ok = np.isfinite(pred) & np.isfinite(expected)
    p, e = pred[ok], expected[ok]
    if len(p) > SCATTER_POINTS:
        pick = np.random.default_rng(0).choice(len(p), SCATTER_POINTS, replace=False)
        p, e = p[pick], e[pick]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(e, p, s=6, alpha=0.5)
    if len(p):
        lo, hi = float(min(e.min(), p.min())), float(max(e.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="y = x")
        ax.legend(loc="upper left")
    ax.set_xlabel(what)
    ax.set_ylabel("canary prediction")
    ax.set_title(f"predicted vs {what} ({int((~ok).sum())} non-finite left out)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def residuals(pred: np.ndarray, expected: np.ndarray, what: str, path: Path) -> Path:
    plt = _pyplot()
    r = pred - expected
    r = r[np.isfinite(r)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(r, bins=50)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlabel(f"prediction - {what}")
    ax.set_ylabel("rows")
    ax.set_title(f"residuals (mean {np.mean(r) if len(r) else float('nan'):.4g})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def confusion_matrix(pred: np.ndarray, expected: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    ok = np.isfinite(pred) & np.isfinite(expected)
    p, e = pred[ok].astype(int), expected[ok].astype(int)
    k = int(max(p.max(initial=0), e.max(initial=0))) + 1
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (e, p), 1)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_title("confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def latency(latency_ms: np.ndarray, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(latency_ms, bins=40)
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        if len(latency_ms):
            v = float(np.percentile(latency_ms, q))
            ax.axvline(v, color="black", linestyle=style, linewidth=1, label=f"p{q} {v:.1f} ms")
    if len(latency_ms):
        ax.legend()
    ax.set_xlabel("request latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"latency over {len(latency_ms)} requests")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
