"""Metric functions on plain arrays, named as in the comparison table and evaluated once per bootstrap draw.

Classification metrics take truth ``(N,)`` class indices and probabilities ``(N, C)``; with C = 2 they use the
probability of class 1 (AUROC, AUPRC, Brier and ECE in their binary forms), with C > 2 the macro one-vs-rest or
top-label forms. Regression metrics take truth ``(N,)`` and predictions ``(N,)``. Survival metrics take follow-up
times, event indicators and risks or survival curves.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Mapping

import numpy as np
from scipy.stats import pearsonr, rankdata
from sklearn.metrics import (
    average_precision_score,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)
from sksurv.metrics import concordance_index_censored, integrated_brier_score
from sksurv.util import Surv

from source.study.calibration import brier_score, expected_calibration_error

ECE_BINS = 10
"""Default number of equal-count bins of the ``ece`` metric."""


def _binary_or_matrix(probabilities: np.ndarray) -> np.ndarray:
    """Class-1 probabilities ``(N,)`` when ``probabilities`` ``(N, C)`` has C = 2, else the matrix unchanged."""
    probabilities = np.asarray(probabilities, dtype=float)
    return probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities


def _rank_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of scores ``(N,)`` for the boolean ``positive`` ``(N,)`` by the Mann-Whitney rank sum (midranks for ties,
    so a tie counts 1/2 as in scikit-learn's ``roc_auc_score``), about ten times faster than scikit-learn per call."""
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC is undefined with one class only")
    rank_sum = rankdata(scores)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """AUROC: binary on the class-1 probability; multiclass the macro mean of one-vs-rest AUROCs over C classes.

    Raises ``ValueError`` when a class has no case.
    """
    truth = np.asarray(truth)
    scores = _binary_or_matrix(probabilities)
    if scores.ndim == 1:
        return _rank_auroc(truth == 1, scores)
    return float(np.mean([_rank_auroc(truth == c, scores[:, c]) for c in range(scores.shape[1])]))


def auprc(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Average precision: binary on the class-1 probability; multiclass the macro mean of one-vs-rest values.

    Raises ``ValueError`` when a class has no positive case (its average precision is undefined).
    """
    truth = np.asarray(truth)
    scores = _binary_or_matrix(probabilities)
    if scores.ndim == 1:
        one_vs_rest = [(truth == 1, scores)]
    else:
        one_vs_rest = [(truth == c, scores[:, c]) for c in range(scores.shape[1])]
    if any(not positive.any() for positive, _ in one_vs_rest):
        raise ValueError("average precision is undefined for a class without positive cases")
    return float(np.mean([average_precision_score(positive, score) for positive, score in one_vs_rest]))


def balanced_accuracy(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean recall of the argmax prediction of probabilities ``(N, C)`` over the classes present in truth ``(N,)``
    (as scikit-learn's ``balanced_accuracy_score``, counted with ``bincount`` for speed)."""
    truth = np.asarray(truth)
    probabilities = np.asarray(probabilities)
    n_classes = max(probabilities.shape[1], int(truth.max()) + 1)
    hits = np.bincount(truth[probabilities.argmax(axis=1) == truth], minlength=n_classes)
    totals = np.bincount(truth, minlength=n_classes)
    present = totals > 0
    return float(np.mean(hits[present] / totals[present]))


def brier(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Brier score: binary form (class-1 probability) for C = 2, multiclass sum-over-classes form for C > 2."""
    return brier_score(truth, _binary_or_matrix(probabilities))


def ece(truth: np.ndarray, probabilities: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``n_bins`` equal-count bins: binary form for C = 2, top-label for C > 2."""
    return expected_calibration_error(truth, _binary_or_matrix(probabilities), n_bins)


def classification_metrics(ece_bins: int) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """The classification metrics by table name, each ``f(truth (N,), probabilities (N, C)) -> float``."""
    return {
        "auroc": auroc,
        "auprc": auprc,
        "balanced_accuracy": balanced_accuracy,
        "brier": brier,
        "ece": partial(ece, n_bins=ece_bins),
    }


CLASSIFICATION_METRICS = classification_metrics(ECE_BINS)


def mae(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error of predictions ``(N,)``."""
    return float(mean_absolute_error(truth, predicted))


def rmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error of predictions ``(N,)``."""
    return float(root_mean_squared_error(truth, predicted))


def r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination of predictions ``(N,)``."""
    return float(r2_score(truth, predicted))


def pearson(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson correlation of truth ``(N,)`` and predictions ``(N,)`` (NaN if either is constant)."""
    return float(pearsonr(truth, predicted).statistic)


REGRESSION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": mae,
    "rmse": rmse,
    "r2": r2,
    "pearson": pearson,
}


def c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (scikit-survival's ``concordance_index_censored``) of risks ``(N,)``.

    Args:
        time: ``(N,)`` follow-up times.
        event: ``(N,)`` bool, True where the event was observed.
        risk: ``(N,)`` predicted risks (higher means earlier event); ties count 1/2.

    Raises ``ValueError`` when there is no comparable pair (e.g. no event).
    """
    return float(concordance_index_censored(np.asarray(event, dtype=bool), np.asarray(time, dtype=float), risk)[0])


def fold_mean_c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray, folds: np.ndarray) -> float:
    """Mean over folds of the per-fold :func:`c_index`; all arrays ``(N,)``, ``folds`` the fold id of each case.

    Risks of different folds come from different models and are only compared within a fold; bootstrap such data
    with ``strata = folds``.
    """
    folds = np.asarray(folds)
    time, event, risk = np.asarray(time), np.asarray(event), np.asarray(risk)
    return float(np.mean([c_index(time[folds == f], event[folds == f], risk[folds == f]) for f in np.unique(folds)]))


def integrated_brier(
    time_train: np.ndarray,
    event_train: np.ndarray,
    time_test: np.ndarray,
    event_test: np.ndarray,
    survival_probabilities: np.ndarray,
    times: np.ndarray,
) -> float:
    """Integrated Brier score (scikit-survival's ``integrated_brier_score``) of predicted survival curves.

    The Brier score at each time is weighted by the inverse probability of censoring, estimated by Kaplan-Meier on
    the training data, and integrated over ``times`` by the trapezoidal rule divided by the time span.

    Args:
        time_train: ``(M,)`` follow-up times of the training cases (censoring distribution).
        event_train: ``(M,)`` bool events of the training cases.
        time_test: ``(N,)`` follow-up times of the evaluated cases.
        event_test: ``(N,)`` bool events of the evaluated cases.
        survival_probabilities: ``(N, T)`` predicted probability of surviving past each time.
        times: ``(T,)`` increasing evaluation times, T >= 2.

    Not computable (scikit-survival raises ``ValueError``) when an evaluation time lies outside ``[min, max)`` of the
    test follow-up times, or when a test follow-up time exceeds the largest training time while the training censoring
    distribution is still above 0 there. Where that distribution has dropped to 0 the affected terms get weight 0.
    """
    train = Surv.from_arrays(np.asarray(event_train, dtype=bool), np.asarray(time_train, dtype=float))
    test = Surv.from_arrays(np.asarray(event_test, dtype=bool), np.asarray(time_test, dtype=float))
    return float(integrated_brier_score(train, test, survival_probabilities, times))


def fold_mean_integrated_brier(
    time: np.ndarray,
    event: np.ndarray,
    survival: np.ndarray,
    folds: np.ndarray,
    times: np.ndarray,
    grids: Mapping[str, np.ndarray],
    censoring: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> float:
    """Mean over folds of the per-fold :func:`integrated_brier`, each fold at its own evaluation times.

    Args:
        time: ``(N,)`` follow-up times.
        event: ``(N,)`` bool events.
        survival: ``(N, T)`` each case's predicted probability of surviving past each of ``times``; a case is only
            read at its fold's grid.
        folds: ``(N,)`` the fold of each case.
        times: ``(T,)`` increasing times.
        grids: fold -> ``(T,)`` bool, the fold's evaluation times; folds without a grid are left out of the mean.
        censoring: fold -> ``(time (M,), event (M,))`` of the patients whose censoring distribution weighs the fold.

    Bootstrap such data with ``strata = folds``. Raises ``ValueError`` when no fold of ``folds`` has a grid, or
    (:func:`integrated_brier`) when a fold's times leave its cases' follow-up.
    """
    folds = np.asarray(folds)
    time, event, survival = np.asarray(time), np.asarray(event), np.asarray(survival)
    scores = []
    for fold in np.unique(folds):
        if fold not in grids:
            continue
        rows, grid = folds == fold, grids[fold]
        reference_time, reference_event = censoring[fold]
        scores.append(
            integrated_brier(
                reference_time, reference_event, time[rows], event[rows], survival[rows][:, grid], times[grid]
            )
        )
    if not scores:
        raise ValueError("no fold has evaluation times of the integrated Brier score")
    return float(np.mean(scores))


HIGHER_IS_BETTER: dict[str, bool] = {
    "auroc": True,
    "auprc": True,
    "balanced_accuracy": True,
    "brier": False,
    "ece": False,
    "mae": False,
    "rmse": False,
    "r2": True,
    "pearson": True,
    "c_index": True,
    "integrated_brier": False,
}
