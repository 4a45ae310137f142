"""Agreement of a reward model with the simulator's ground truth: Spearman on progress, P/R/F1 on success.

The learner logs these to TensorBoard during training (``audit_labels`` of the labels actors send);
``striata train-reward`` prints them for the held-out rollouts, ``striata audit-reward`` for a policy's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from striata.learner.labels import Labels


def progress_spearman(predicted: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation; NaN where it is undefined (fewer than 2 values or a constant array)."""
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    true = np.asarray(true, dtype=np.float64).ravel()
    if predicted.shape != true.shape:
        raise ValueError(f"predicted {predicted.shape} and true {true.shape} progress differ in shape")
    keep = np.isfinite(predicted) & np.isfinite(true)
    predicted, true = predicted[keep], true[keep]
    if len(true) < 2 or np.ptp(true) == 0 or np.ptp(predicted) == 0:
        return math.nan
    return float(spearmanr(predicted, true).statistic)


def success_scores(predicted: np.ndarray, true: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall and F1 of ``predicted >= threshold`` (probabilities or 0/1) against 0/1 truth."""
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    true = np.asarray(true).ravel().astype(bool)
    if predicted.shape != true.shape:
        raise ValueError(f"predicted {predicted.shape} and true {true.shape} success differ in shape")
    positive = predicted >= threshold
    tp = int((positive & true).sum())
    fp = int((positive & ~true).sum())
    fn = int((~positive & true).sum())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return {"precision": precision, "recall": recall, "f1": f1}


def audit(
    predicted_progress: np.ndarray,
    true_progress: np.ndarray,
    predicted_success: np.ndarray,
    true_success: np.ndarray,
    threshold: float = 0.5,
) -> dict[str, float]:
    """All agreement figures in one flat dict (TensorBoard-ready scalars)."""
    scores = success_scores(predicted_success, true_success, threshold)
    return {
        "spearman": progress_spearman(predicted_progress, true_progress),
        "success_precision": scores["precision"],
        "success_recall": scores["recall"],
        "success_f1": scores["f1"],
        "count": float(len(np.ravel(true_progress))),
    }


def audit_labels(labels: Labels, threshold: float = 0.5) -> dict[str, float]:
    """``audit`` of reward-model labels against the simulator's truth they carry (every row given: pass
    the ``ok`` ones)."""
    true_success = labels.true_success > 0.5
    return audit(labels.progress, labels.true_progress, labels.done_prob, true_success, threshold)
