"""Figures computed in servegate's own code (numpy/scipy): MAE, RMSE, accuracy, AUC.

Rows whose prediction is missing or not finite are left out of the metrics
(they are the sanity check's business); the count left out is reported there.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def mae(pred: np.ndarray, label: np.ndarray) -> float:
    ok = np.isfinite(pred)
    return float(np.mean(np.abs(pred[ok] - label[ok]))) if ok.any() else float("nan")


def rmse(pred: np.ndarray, label: np.ndarray) -> float:
    ok = np.isfinite(pred)
    return float(np.sqrt(np.mean((pred[ok] - label[ok]) ** 2))) if ok.any() else float("nan")


def accuracy(pred_class: np.ndarray, label: np.ndarray) -> float:
    return float(np.mean(pred_class == label)) if len(label) else float("nan")


def binary_auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) identity; ties count half. NaN with one class only."""
    ok = np.isfinite(score)
    score, label = score[ok], label[ok].astype(bool)
    n_pos = int(label.sum())
    n_neg = len(label) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def multiclass_auc(scores: np.ndarray, label: np.ndarray) -> float:
    """Macro-averaged one-vs-rest AUC over the classes present in ``label``."""
    aucs = [binary_auc(scores[:, k], label == k) for k in range(scores.shape[1])]
    aucs = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


