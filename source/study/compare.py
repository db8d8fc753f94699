"""The comparison's two tables, from the models' row-aligned predictions: each model's metrics with a bootstrap and a
fold interval (``comparison.csv``), and every pair's differences with paired tests, Holm-adjusted (``pairwise.csv``).

Pure functions on arrays and DataFrames: no files, no torch. Every model is scored on the same bootstrap draws of the
cases, so the differences of two models are paired.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import numpy as np
import pandas as pd
from scipy.stats import t as student_t
from tqdm import tqdm

from source.study.alignment import AlignedPredictions
from source.study.bootstrap import bootstrap_indices, bootstrap_metric, paired_bootstrap_p_value, percentile_interval
from source.study.delong import delong_test
from source.study.fold_tests import corrected_resampled_t_test, t_interval
from source.study.metrics import (
    REGRESSION_METRICS,
    classification_metrics,
    fold_mean_c_index,
    fold_mean_integrated_brier,
)
from source.study.multiple import holm


@dataclass(frozen=True)
class ComparisonSettings:
    """How the comparison resamples and bins.

    Attributes:
        n_bootstrap: bootstrap draws B.
        ci: level of every interval.
        seed: seed of the draws.
        ece_bins: equal-count bins of the expected calibration error and the reliability diagrams.
    """

    n_bootstrap: int = 2000
    ci: float = 0.95
    seed: int = 0
    ece_bins: int = 10


@dataclass
class Scored:
    """One metric of one model: on all cases, on every bootstrap draw, on each fold.

    Attributes:
        estimate: the metric on the pooled cases (survival: the mean of the per-fold values).
        draws: ``(B,)`` the metric on each bootstrap draw (NaN where undefined).
        folds: ``(F,)`` the metric on each fold's cases (NaN where undefined).
    """

    estimate: float
    draws: np.ndarray
    folds: np.ndarray


def task_metrics(data: AlignedPredictions, ece_bins: int) -> dict[str, Callable[..., float]]:
    """The metrics of ``data.kind`` by table name, each called on :func:`metric_arrays`; survival's integrated Brier
    score where ``data.curves`` holds survival probabilities."""
    if data.kind == "classification":
        return classification_metrics(ece_bins)
    if data.kind == "survival":
        metrics = {"c_index": fold_mean_c_index}
        if data.curves is not None:
            curves = data.curves
            metrics["integrated_brier"] = partial(
                fold_mean_integrated_brier, times=curves.times, grids=curves.grids, censoring=curves.censoring
            )
        return metrics
    return dict(REGRESSION_METRICS)


def metric_arrays(data: AlignedPredictions, model: str, metric: str) -> tuple[np.ndarray, ...]:
    """What ``metric`` takes, for ``model``: (truth, probabilities), (time, event, risk, fold), for the integrated
    Brier score (time, event, survival probabilities ``(N, T)``, fold), or (truth, prediction); every array's first
    axis is the N cases."""
    cases, scores = data.cases, data.scores[model]
    if data.kind == "survival":
        if metric == "integrated_brier":
            scores = data.curves.probabilities[model]
        return cases["time"].to_numpy(float), cases["event"].to_numpy(bool), scores, data.folds
    return cases["truth"].to_numpy(), scores


def bootstrap_strata(data: AlignedPredictions) -> np.ndarray:
    """``(N,)`` the stratum of each case: its class (classification keeps every class's count in each draw), its fold
    (survival: risks are compared only within a fold), one stratum otherwise (regression)."""
    if data.kind == "classification":
        return data.cases["truth"].to_numpy()
    if data.kind == "survival":
        return data.folds
    return np.zeros(len(data.cases), dtype=int)


def draw_cases(data: AlignedPredictions, settings: ComparisonSettings) -> np.ndarray:
    """``(B, N)`` the bootstrap draws every model is scored on (:func:`bootstrap_strata`, ``settings.seed``)."""
    return bootstrap_indices(settings.n_bootstrap, bootstrap_strata(data), settings.seed)


def evaluate(metric: Callable[..., float], arrays: tuple[np.ndarray, ...]) -> float:
    """``metric(*arrays)``, NaN where it is undefined (one class, no comparable pair, a constant input)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(metric(*arrays))
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return float("nan")


def score_models(
    data: AlignedPredictions, settings: ComparisonSettings, indices: np.ndarray, progress: bool = False
) -> dict[tuple[str, str], Scored]:
    """Every metric of every model on the pooled cases, each draw of ``indices`` ``(B, N)`` and each fold.

    Returns:
        ``(model, metric) -> Scored``, models in ``data`` order, metrics in the task's order.
    """
    metrics = task_metrics(data, settings.ece_bins)
    folds = data.folds
    scored = {}
    bar = tqdm(total=len(data.models) * len(metrics), desc="bootstrap", unit="metric", disable=not progress)
    for model in data.models:
        for name, metric in metrics.items():
            arrays = metric_arrays(data, model, name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                draws = bootstrap_metric(metric, arrays, indices)
            per_fold = [evaluate(metric, tuple(a[folds == fold] for a in arrays)) for fold in data.fold_names]
            scored[model, name] = Scored(evaluate(metric, arrays), draws, np.array(per_fold))
            bar.update()
    bar.close()
    return scored


def comparison_table(scored: dict[tuple[str, str], Scored], n_cases: int, ci: float) -> pd.DataFrame:
    """``comparison.csv``: one row per model and metric.

    Columns: ``model, metric, estimate`` (pooled cases), ``ci_low, ci_high`` (percentile bootstrap), ``fold_mean,
    fold_std, fold_ci_low, fold_ci_high`` (Student-t over the folds where the metric is defined; NaN with fewer than
    two), ``n`` (cases), ``n_folds`` (folds with a value), ``failed_draws`` (draws where the metric was undefined).
    """
    rows = []
    for (model, metric), result in scored.items():
        low, high = percentile_interval(result.draws, ci)
        defined = result.folds[np.isfinite(result.folds)]
        fold_mean, fold_std, fold_low, fold_high = t_interval(defined, ci) if len(defined) > 1 else (np.nan,) * 4
        rows.append(
            {
                "model": model,
                "metric": metric,
                "estimate": result.estimate,
                "ci_low": low,
                "ci_high": high,
                "fold_mean": fold_mean,
                "fold_std": fold_std,
                "fold_ci_low": fold_low,
                "fold_ci_high": fold_high,
                "n": n_cases,
                "n_folds": len(defined),
                "failed_draws": int(np.isnan(result.draws).sum()),
            }
        )
    return pd.DataFrame(rows)


def corrected_t_interval(differences: np.ndarray, test_train_ratio: float, ci: float) -> tuple[float, float]:
    """Interval of the mean per-fold difference ``(F,)`` with Nadeau & Bengio's corrected variance
    ``(1/F + n_test/n_train) * var`` (ddof=1) and F - 1 degrees of freedom: the interval the corrected t-test
    inverts. ``(nan, nan)`` with fewer than two folds."""
    if len(differences) < 2:
        return float("nan"), float("nan")
    half_width = student_t.ppf(0.5 + ci / 2, len(differences) - 1) * np.sqrt(
        (1 / len(differences) + test_train_ratio) * np.var(differences, ddof=1)
    )
    mean = float(np.mean(differences))
    return mean - float(half_width), mean + float(half_width)


def _pooled_row(
    data: AlignedPredictions, pair: tuple[str, str], metric: str, scored: dict, ci: float
) -> dict[str, object]:
    """The difference of ``pair`` on the pooled cases: DeLong for a binary AUROC (two cases of each class at least),
    else the paired bootstrap."""
    a, b = (scored[model, metric] for model in pair)
    draws = a.draws - b.draws
    low, high = percentile_interval(draws, ci)
    row = {"difference": a.estimate - b.estimate, "ci_low": low, "ci_high": high, "statistic": np.nan}
    if metric == "auroc" and data.binary and min(np.bincount(data.cases["truth"], minlength=2)) >= 2:
        truth = data.cases["truth"].to_numpy()
        difference, z, p = delong_test(truth, data.scores[pair[0]][:, 1], data.scores[pair[1]][:, 1])
        return row | {"difference": difference, "statistic": z, "p_value": p, "test": "delong"}
    return row | {"p_value": paired_bootstrap_p_value(draws, row["difference"]), "test": "paired_bootstrap"}


def _fold_row(pair: tuple[str, str], metric: str, scored: dict, ratio: float, ci: float) -> Optional[dict]:
    """The mean per-fold difference of ``pair`` with the corrected resampled t-test; None with fewer than two folds
    where both models' metric is defined."""
    differences = scored[pair[0], metric].folds - scored[pair[1], metric].folds
    differences = differences[np.isfinite(differences)]
    if len(differences) < 2:
        return None
    statistic, p_value = corrected_resampled_t_test(differences, ratio)
    low, high = corrected_t_interval(differences, ratio, ci)
    return {
        "difference": float(np.mean(differences)),
        "ci_low": low,
        "ci_high": high,
        "statistic": statistic,
        "p_value": p_value,
        "test": "corrected_t",
    }


def pairwise_table(data: AlignedPredictions, scored: dict[tuple[str, str], Scored], ci: float) -> pd.DataFrame:
    """``pairwise.csv``: every pair of models (a before b in the given order) and metric.

    Columns: ``model_a, model_b, metric, difference`` (a - b), ``ci_low, ci_high``, ``statistic`` (DeLong's z or the
    corrected t; NaN for the bootstrap), ``p_value``, ``p_adjusted`` (Holm over every row), ``test``: ``delong`` (a
    binary AUROC on the pooled cases: interval from the paired bootstrap), ``paired_bootstrap`` (the other metrics:
    both models on the same draws), and, with two or more folds and a known ``data.test_train_ratio``, a
    ``corrected_t`` row per metric over the per-fold differences (Nadeau & Bengio).
    """
    metrics = list(dict.fromkeys(metric for _, metric in scored))
    rows = []
    for pair in itertools.combinations(data.models, 2):
        for metric in metrics:
            rows.append(
                {"model_a": pair[0], "model_b": pair[1], "metric": metric} | _pooled_row(data, pair, metric, scored, ci)
            )
            if data.test_train_ratio is not None:
                fold_row = _fold_row(pair, metric, scored, data.test_train_ratio, ci)
                if fold_row is not None:
                    rows.append({"model_a": pair[0], "model_b": pair[1], "metric": metric} | fold_row)
    table = pd.DataFrame(rows)
    table["p_adjusted"] = holm(table["p_value"].to_numpy(float))
    columns = ["model_a", "model_b", "metric", "difference", "ci_low", "ci_high", "statistic", "p_value"]
    return table[[*columns, "p_adjusted", "test"]]
