"""From canary answers to the tables GX checks: predictions, expected values, derived columns.

The rows table holds only rows whose request was answered (a failed request
is the service-level check's business, counted in the requests table). All
numbers are float64 so that derived columns never overflow or round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from servegate.errors import ValidationInputError
from servegate.validation.config_sections import ParityCheck


class OutputChoiceError(ValidationInputError):
    """The answers of an output cannot be read as its task says (or do not match the golden predictions)."""


@dataclass
class Derived:
    """What one model's answers say, per row: the prediction, a score, and per-row output extremes."""

    outputs: np.ndarray      # (n, width) float64
    prediction: np.ndarray   # regression value or predicted class (float64)
    score: np.ndarray | None  # classification score (binary) or (n, k) probabilities
    finite: np.ndarray       # bool per row: every output value finite


def derive(outputs: np.ndarray, task: str, threshold: float) -> Derived:
    y = np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)
    finite = np.isfinite(y).all(axis=1)
    if task == "regression":
        if y.shape[1] != 1:
            raise OutputChoiceError(f"regression needs one value per row; the output has {y.shape[1]}. "
                                    "Set 'task: classification' or choose another 'output'")
        return Derived(y, y[:, 0], None, finite)
    if y.shape[1] == 1:
        score = y[:, 0]
        with np.errstate(invalid="ignore"):
            predicted = (score >= threshold).astype("float64")
        predicted[~np.isfinite(score)] = np.nan
        return Derived(y, predicted, score, finite)
    with np.errstate(invalid="ignore"):
        predicted = np.argmax(np.where(np.isfinite(y), y, -np.inf), axis=1).astype("float64")
    predicted[~finite] = np.nan
    score = y[:, 1] if y.shape[1] == 2 else y
    return Derived(y, predicted, score, finite)


def parity_excess(outputs: np.ndarray, golden: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Per row, the worst ``|y - g| - (atol + rtol |g|)`` over its values; <= 0 means within tolerance.

    Non-finite answers get +inf (never within tolerance), unless golden is the same non-finite value.
    """
    g = np.asarray(golden, dtype="float64").reshape(len(golden), -1)
    if g.shape != outputs.shape:
        raise OutputChoiceError(f"golden predictions have shape {list(g.shape)} per batch but the canary answers "
                                f"{list(outputs.shape)}; they must match row for row")
    with np.errstate(invalid="ignore"):
        excess = np.abs(outputs - g) - (atol + rtol * np.abs(g))
    same_nonfinite = (~np.isfinite(outputs)) & ((outputs == g) | (np.isnan(outputs) & np.isnan(g)))
    excess = np.where(same_nonfinite, 0.0, excess)
    excess = np.where(np.isnan(excess), np.inf, excess)
    return excess.max(axis=1)


def rows_table(candidate: Derived, answered: np.ndarray, labels: np.ndarray | None, golden: np.ndarray | None,
               baseline: Derived | None, task: str, threshold: float, parity: ParityCheck) -> pd.DataFrame:
    """The rows table over answered rows (see gx_suite's docstring for the columns)."""
    idx = np.flatnonzero(answered)
    cols: dict[str, np.ndarray] = {"row": idx}
    y = candidate.outputs[idx]
    cols["prediction"] = candidate.prediction[idx]
    with np.errstate(invalid="ignore"):
        cols["output_min"] = np.where(candidate.finite[idx], y.min(axis=1), np.nan)
        cols["output_max"] = np.where(candidate.finite[idx], y.max(axis=1), np.nan)
    cols["output_finite"] = candidate.finite[idx]
    if candidate.score is not None and np.ndim(candidate.score) == 1:
        cols["score"] = candidate.score[idx]
    if golden is not None:
        cols["parity_excess"] = parity_excess(y, golden[idx], parity.atol, parity.rtol)
        g = np.asarray(golden, dtype="float64").reshape(len(golden), -1)[idx]
        cols["golden_prediction"] = derive(g, task, threshold).prediction
    if labels is not None:
        label = np.asarray(labels, dtype="float64").reshape(len(labels), -1)[idx, 0]
        cols["label"] = label
        for prefix, model in (("", candidate), ("baseline_", baseline)):
            if model is None:
                continue
            p = model.prediction[idx]
            ok = np.isfinite(p)
            if task == "regression":
                # A non-finite answer has no error to average: null, so means skip it (sanity catches it).
                cols[f"{prefix}abs_error"] = np.where(ok, np.abs(p - label), np.nan)
                cols[f"{prefix}sq_error"] = np.where(ok, (p - label) ** 2, np.nan)
            else:
                cols[f"{prefix}correct"] = np.where(ok, (p == label).astype("float64"), 0.0)
    if baseline is not None:
        cols["baseline_prediction"] = baseline.prediction[idx]
        if baseline.score is not None and np.ndim(baseline.score) == 1:
            cols["baseline_score"] = baseline.score[idx]
    return pd.DataFrame(cols)
