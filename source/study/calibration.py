"""Calibration of predicted probabilities: expected calibration error, reliability curve and Brier score.

Binning is by equal counts: cases are sorted by confidence and split into ``n_bins`` groups of nearly equal size
(``np.array_split``), so every bin holds about N / n_bins cases whatever the spread of the probabilities.

Binary problems pass probabilities ``(N,)`` of class 1 and compare them with the frequency of class 1. Multiclass
problems pass ``(N, C)`` and use the top-label form: the confidence is the largest probability and the outcome whether
its class is the true one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss


def _confidence_and_outcome(truth: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence ``(N,)`` and 0/1 outcome ``(N,)`` of binary ``(N,)`` or top-label ``(N, C)`` probabilities."""
    truth = np.asarray(truth)
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim == 1:
        return probabilities, (truth == 1).astype(float)
    if probabilities.ndim == 2:
        return probabilities.max(axis=1), (probabilities.argmax(axis=1) == truth).astype(float)
    raise ValueError(f"probabilities must be (N,) or (N, C), got shape {probabilities.shape}")


def _bin_statistics(
    truth: np.ndarray, probabilities: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean confidence and observed frequency ``(n_bins,)`` of the equal-count bins (fewer when N < n_bins)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence, outcome = _confidence_and_outcome(truth, probabilities)
    order = np.argsort(confidence, kind="stable")
    bins = [members for members in np.array_split(order, n_bins) if members.size]
    counts = np.array([members.size for members in bins])
    mean_predicted = np.array([confidence[members].mean() for members in bins])
    observed = np.array([outcome[members].mean() for members in bins])
    return counts, mean_predicted, observed


def reliability_curve(truth: np.ndarray, probabilities: np.ndarray, n_bins: int) -> pd.DataFrame:
    """Mean predicted probability and observed frequency per equal-count bin.

    Args:
        truth: ``(N,)`` labels: {0, 1} for binary, class indices for multiclass.
        probabilities: ``(N,)`` of class 1 (binary) or ``(N, C)`` (multiclass, top-label).
        n_bins: number of bins (fewer rows when N < n_bins).

    Returns:
        One row per bin with columns ``bin`` (0-based, increasing confidence), ``count``, ``mean_predicted`` and
        ``observed_frequency``.
    """
    counts, mean_predicted, observed = _bin_statistics(truth, probabilities, n_bins)
    return pd.DataFrame(
        {
            "bin": np.arange(counts.size),
            "count": counts,
            "mean_predicted": mean_predicted,
            "observed_frequency": observed,
        }
    )


def expected_calibration_error(truth: np.ndarray, probabilities: np.ndarray, n_bins: int) -> float:
    """ECE = sum over equal-count bins of (bin size / N) * |observed frequency - mean confidence|.

    Args:
        truth: ``(N,)`` labels: {0, 1} for binary, class indices for multiclass.
        probabilities: ``(N,)`` of class 1 (binary: class-1 probability vs class-1 frequency) or ``(N, C)``
            (multiclass: top-label confidence vs accuracy).
        n_bins: number of bins.
    """
    counts, mean_predicted, observed = _bin_statistics(truth, probabilities, n_bins)
    return float(np.sum(counts * np.abs(observed - mean_predicted)) / counts.sum())


def brier_score(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Brier score.

    Binary, probabilities ``(N,)`` of class 1: ``mean((p - y)^2)`` (scikit-learn's ``brier_score_loss``), in [0, 1].
    Multiclass, probabilities ``(N, C)`` and truth ``(N,)`` class indices: mean over cases of the sum over classes of
    ``(p_c - [y == c])^2``, in [0, 2]. For two classes the multiclass form is twice the binary one.
    """
    truth = np.asarray(truth)
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim == 1:
        return float(brier_score_loss(truth, probabilities, pos_label=1))
    one_hot = truth[:, None] == np.arange(probabilities.shape[1])[None, :]
    return float(np.mean(np.sum((probabilities - one_hot) ** 2, axis=1)))
