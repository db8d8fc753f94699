"""DeLong's covariance of correlated AUCs and the paired test, by the fast midrank algorithm of Sun & Xu (2014).

For m positives and n negatives, the structural components of a model are V10 ``(m,)`` (for each positive, the share
of negatives it outscores, ties counting 1/2) and V01 ``(n,)`` (for each negative, the share of positives that outscore
it). Both follow from midranks: with Tz the midranks among all cases, Tx among positives only and Ty among negatives
only, ``V10 = (Tz_pos - Tx) / n`` and ``V01 = 1 - (Tz_neg - Ty) / m``. The AUC is the mean of either, and DeLong,
DeLong & Clarke-Pearson (1988) estimate the covariance of K AUCs as ``S10 / m + S01 / n`` with S10, S01 the ``(K, K)``
sample covariances (ddof=1) of the components.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata


def _sample_covariance(components: np.ndarray) -> np.ndarray:
    """``(K, K)`` covariance (ddof=1) between the K rows of ``components`` ``(K, M)``."""
    centred = components - components.mean(axis=1, keepdims=True)
    return centred @ centred.T / (components.shape[1] - 1)


def structural_components(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of K models from midranks.

    Args:
        truth: ``(N,)`` binary labels in {0, 1}.
        scores: ``(K, N)`` scores of K models on the same cases (higher means more likely positive).

    Returns:
        V10 ``(K, m)`` over the positives and V01 ``(K, n)`` over the negatives.
    """
    truth = np.asarray(truth)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    if scores.shape[1] != truth.shape[0]:
        raise ValueError(f"scores {scores.shape} do not match truth {truth.shape}")
    if not np.all(np.isin(truth, (0, 1))):
        raise ValueError("truth must be binary in {0, 1}")
    positive = truth == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos < 2 or n_neg < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {n_pos} and {n_neg}")
    ranks_all = rankdata(scores, axis=1)
    ranks_pos = rankdata(scores[:, positive], axis=1)
    ranks_neg = rankdata(scores[:, ~positive], axis=1)
    v10 = (ranks_all[:, positive] - ranks_pos) / n_neg
    v01 = 1.0 - (ranks_all[:, ~positive] - ranks_neg) / n_pos
    return v10, v01


def delong_auc_variance(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of K models on the same cases and their DeLong covariance.

    Args:
        truth: ``(N,)`` binary labels in {0, 1}, at least 2 of each.
        scores: ``(K, N)`` scores of K models (a ``(N,)`` vector counts as K = 1).

    Returns:
        AUCs ``(K,)`` (ties counting 1/2, as scikit-learn's ``roc_auc_score``) and covariance ``(K, K)``.
    """
    v10, v01 = structural_components(truth, scores)
    aucs = v10.mean(axis=1)
    covariance = _sample_covariance(v10) / v10.shape[1] + _sample_covariance(v01) / v01.shape[1]
    return aucs, covariance


def delong_test(truth: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float, float]:
    """DeLong's paired test of equal AUCs of two models on the same cases.

    Args:
        truth: ``(N,)`` binary labels in {0, 1}.
        scores_a: ``(N,)`` scores of model a.
        scores_b: ``(N,)`` scores of model b.

    Returns:
        ``(auc_a - auc_b, z, two-sided p)`` with ``z = difference / sqrt(var_a + var_b - 2 cov_ab)``. When that
        variance is 0 (e.g. identical rankings): ``z = 0, p = 1`` if the difference is 0, else ``z = +-inf, p = 0``.
    """
    aucs, covariance = delong_auc_variance(truth, np.stack([scores_a, scores_b]))
    difference = float(aucs[0] - aucs[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    if variance <= 0.0 or difference == 0.0:
        if difference == 0.0:
            return difference, 0.0, 1.0
        return difference, float(np.sign(difference) * np.inf), 0.0
    z = difference / np.sqrt(variance)
    return difference, float(z), float(2.0 * norm.sf(abs(z)))
