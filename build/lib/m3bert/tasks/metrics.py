"""Evaluation metrics of the downstream tasks, in numpy, checked against scikit-learn in the tests.

Conventions follow scikit-learn: macro averages are unweighted means over classes; ROC-AUC and average precision
skip classes whose targets are all one value (undefined there) rather than failing.
"""

from __future__ import annotations

import numpy as np


def confusion(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class."""
    return np.bincount(targets * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, -1)


def accuracy(targets: np.ndarray, predictions: np.ndarray) -> float:
    return float((targets == predictions).mean())


def macro_f1(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Mean F1 over the classes present in targets or predictions (scikit-learn's ``average='macro'``)."""
    matrix = confusion(targets, predictions, num_classes)
    tp = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(1), matrix.sum(0)
    denominator = support + predicted
    seen = denominator > 0
    return float(np.mean(2 * tp[seen] / denominator[seen]))


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC-AUC via the Mann-Whitney statistic; nan if only one class is present."""
    positives = targets.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as the step sum sum_n (R_n - R_{n-1}) P_n over distinct thresholds
    (scikit-learn's ``average_precision_score``); nan without positives."""
    positives = targets.astype(bool)
    if positives.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, positives = scores[order], positives[order]
    last_of_tie = np.concatenate([np.flatnonzero(np.diff(scores)), [len(scores) - 1]])
    true_pos = np.cumsum(positives)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / positives.sum()
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def macro(metric, targets: np.ndarray, scores: np.ndarray) -> float:
    """Mean of a binary metric over the columns of (clips, classes) arrays, skipping undefined columns."""
    values = np.array([metric(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def r2(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column of (clips, dims) arrays."""
    residual = ((targets - predictions) ** 2).sum(0)
    total = ((targets - targets.mean(0)) ** 2).sum(0)
    return 1.0 - residual / np.where(total > 0, total, np.nan)
