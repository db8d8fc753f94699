"""Tests over cross-validation folds: Student-t intervals and Nadeau & Bengio's corrected resampled t-test."""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t


def t_interval(values: np.ndarray, ci: float) -> tuple[float, float, float, float]:
    """Mean of per-fold values ``(F,)`` with its Student-t interval at level ``ci`` (F - 1 degrees of freedom).

    Returns:
        ``(mean, std, low, high)`` with std the sample standard deviation (ddof=1); ``(mean, nan, nan, nan)`` when
        F < 2 (mean NaN when F = 0). NaN values propagate.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan"), float("nan")
    std = float(values.std(ddof=1))
    half_width = student_t.ppf(0.5 + ci / 2.0, values.size - 1) * std / np.sqrt(values.size)
    return mean, std, float(mean - half_width), float(mean + half_width)


def corrected_resampled_t_test(differences: np.ndarray, test_train_ratio: float) -> tuple[float, float]:
    """Nadeau & Bengio (2003) corrected resampled t-test of a zero mean difference between two models.

    Folds share training cases, so per-fold differences are correlated and the plain paired t-test is too liberal.
    The correction inflates the variance of the mean: ``t = mean(d) / sqrt((1/F + n_test/n_train) * var(d))`` with
    var the sample variance (ddof=1), referred to Student's t with F - 1 degrees of freedom.

    Args:
        differences: ``(F,)`` per-fold metric differences (model a minus model b).
        test_train_ratio: n_test / n_train of one fold, e.g. ``1 / (K - 1)`` for K-fold cross-validation; 0 gives the
            uncorrected paired t-test.

    Returns:
        ``(t, two-sided p)``; ``(nan, nan)`` when F < 2. With zero variance: ``(0.0, 1.0)`` if the mean difference
        is 0, else ``(+-inf, 0.0)``.
    """
    if test_train_ratio < 0.0:
        raise ValueError(f"test_train_ratio must be >= 0, got {test_train_ratio}")
    differences = np.asarray(differences, dtype=float)
    n_folds = differences.size
    if n_folds < 2:
        return float("nan"), float("nan")
    mean = float(differences.mean())
    variance = float(differences.var(ddof=1))
    if variance == 0.0:
        if mean == 0.0:
            return 0.0, 1.0
        return float(np.sign(mean) * np.inf), 0.0
    statistic = mean / np.sqrt((1.0 / n_folds + test_train_ratio) * variance)
    return float(statistic), float(2.0 * student_t.sf(abs(statistic), n_folds - 1))
