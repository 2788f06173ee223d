"""The report's pictures, as PNG files (matplotlib, Agg backend: no display needed).

Candidate and production (the baseline) are drawn on the same axes, so a
person sees at a glance why a candidate was rejected:

- ``predicted_vs_expected.png``: prediction (a classifier's score) against the
  label, else the golden prediction, with the y = x line;
- ``residuals.png`` (regression with labels): prediction - label distributions;
- ``prediction_distribution.png``: the prediction (score) distributions, with
  the labels' when there is no baseline;
- ``confusion_matrix.png`` (classification with labels): the candidate's;
- ``latency.png``: the latency CDF of every version under the steady load.

Large references are subsampled (a fixed seed) for scatter plots so that
drawing stays fast; histograms use every row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCATTER_POINTS = 5000
COLOURS = {"candidate": "tab:orange", "production": "tab:blue", "labels": "tab:gray"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _subsample(n: int) -> np.ndarray:
    if n <= SCATTER_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, SCATTER_POINTS, replace=False))


def predicted_vs_expected(series: dict[str, np.ndarray], expected: np.ndarray, what: str, path: Path,
                          title: str | None = None) -> Path:
    """Scatter of each series (candidate, production) against the expected values, one colour each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    pick = _subsample(len(expected))
    finite = [expected[np.isfinite(expected)]]
    for who, values in series.items():
        ok = np.isfinite(values[pick]) & np.isfinite(expected[pick])
        ax.scatter(expected[pick][ok], values[pick][ok], s=6, alpha=0.5, label=who, color=COLOURS.get(who))
        finite.append(values[np.isfinite(values)])
    both = np.concatenate(finite)
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="y = x")
    ax.legend(loc="upper left")
    ax.set_xlabel(what)
    ax.set_ylabel("prediction")
    ax.set_title(title or f"predicted vs {what}")
    return _save(fig, path)


def distributions(series: dict[str, np.ndarray], xlabel: str, title: str, path: Path) -> Path:
    """Overlaid histograms (same bins) of each series."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    values = {k: v[np.isfinite(v)] for k, v in series.items()}
    everything = np.concatenate([v for v in values.values()] or [np.zeros(1)])
    bins = np.histogram_bin_edges(everything, bins=40) if len(everything) else 10
    for who, v in values.items():
        ax.hist(v, bins=bins, histtype="step", linewidth=1.5, label=f"{who} (mean {np.mean(v) if len(v) else 0:.3g})",
                color=COLOURS.get(who))
    ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title)
    return _save(fig, path)


def confusion_matrix(pred: np.ndarray, expected: np.ndarray, path: Path, title: str = "confusion matrix") -> Path:
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
    ax.set_xlabel("predicted class (candidate)")
    ax.set_ylabel("true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_title(title)
    return _save(fig, path)


def latency_cdf(latencies: dict[str, np.ndarray], path: Path) -> Path:
    """Empirical CDF of request latency per version, p95 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for who, lat in latencies.items():
        name = "production" if who == "baseline" else who
        if not len(lat):
            continue
        x = np.sort(lat)
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color=COLOURS.get(name),
                label=f"{name}: {len(x)} requests, p95 {np.percentile(x, 95):.1f} ms")
    ax.axhline(0.95, color="black", linestyle=":", linewidth=1)
    ax.set_xlabel("request latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("latency under the steady load")
    ax.legend(loc="lower right")
    return _save(fig, path)


def compare_outputs(table, task: str, out: Path, output: str | None = None, primary: bool = True) -> dict[str, str]:
    """Every comparison plot one rows table allows; name -> path.

    ``output`` names the model output in the titles (several outputs validated). The primary output's
    files and names are the plain ones (``predicted_vs_expected.png``, ``plot_predicted_vs_expected``);
    another output's carry its name (``<output>.predicted_vs_expected.png``, ``plot_predicted_vs_expected.<output>``).
    """
    def key(base: str) -> str:
        return base if primary else f"{base}.{output}"

    def file(base: str) -> Path:
        return out / (base if primary else f"{_file_safe(output or '')}.{base}")

    def titled(text: str) -> str:
        return text if output is None else f"{output}: {text}"

    drawn: dict[str, str] = {}
    value = "score" if "score" in table else "prediction"
    series = {"candidate": table[value].to_numpy()}
    base_col = "baseline_score" if value == "score" else "baseline_prediction"
    if base_col in table:
        series["production"] = table[base_col].to_numpy()
    expected_col = "label" if "label" in table else ("golden_prediction" if "golden_prediction" in table else None)
    if expected_col:
        what = "label" if expected_col == "label" else "golden prediction"
        expected = table[expected_col].to_numpy()
        drawn[key("plot_predicted_vs_expected")] = str(predicted_vs_expected(
            series, expected, what, file("predicted_vs_expected.png"), title=titled(f"predicted vs {what}")))
        if task == "regression" and expected_col == "label":
            residual = {k: v - expected for k, v in series.items()}
            drawn[key("plot_residuals")] = str(distributions(residual, "prediction - label", titled("residuals"),
                                                             file("residuals.png")))
    if task == "classification" and "label" in table:
        drawn[key("plot_confusion_matrix")] = str(confusion_matrix(
            table["prediction"].to_numpy(), table["label"].to_numpy(), file("confusion_matrix.png"),
            title=titled("confusion matrix")))
    shown = dict(series)
    if "production" not in shown and "label" in table:
        shown["labels"] = table["label"].to_numpy()
    drawn[key("plot_prediction_distribution")] = str(distributions(
        shown, value, titled(f"{value} distribution"), file("prediction_distribution.png")))
    return drawn


def _file_safe(name: str) -> str:
    """An output name as a file name part: letters, digits, ``-``, ``_`` and ``.`` kept, the rest ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "output"
