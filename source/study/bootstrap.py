"""Stratified bootstrap draws, percentile intervals and the paired bootstrap p-value."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm


def bootstrap_indices(n_bootstrap: int, strata: np.ndarray, seed: int) -> np.ndarray:
    """Case indices of ``n_bootstrap`` draws with replacement within each stratum.

    Args:
        n_bootstrap: number of draws B.
        strata: ``(N,)`` labels of any kind (class labels, fold ids, a constant); cases are only ever replaced by
            cases of their own stratum, so every draw keeps each stratum's size.
        seed: seed of ``np.random.default_rng``.

    Returns:
        ``(B, N)`` int indices into the N cases; positions of a stratum are filled with members of that stratum.
    """
    strata = np.asarray(strata)
    if strata.ndim != 1:
        raise ValueError(f"strata must be 1-D, got shape {strata.shape}")
    rng = np.random.default_rng(seed)
    _, stratum_of_case = np.unique(strata, return_inverse=True)
    indices = np.empty((n_bootstrap, strata.shape[0]), dtype=np.intp)
    for stratum in range(int(stratum_of_case.max(initial=-1)) + 1):
        members = np.flatnonzero(stratum_of_case == stratum)
        indices[:, members] = members[rng.integers(0, members.size, size=(n_bootstrap, members.size))]
    return indices


def percentile_interval(values: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``(B,)`` draws at level ``ci`` (e.g. 0.95), NaNs ignored.

    Returns ``(nan, nan)`` when every draw is NaN.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    values = np.asarray(values, dtype=float)
    if not np.any(~np.isnan(values)):
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - ci)
    low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_bootstrap_p_value(differences: np.ndarray, observed: float) -> float:
    """Two-sided bootstrap p-value of "no difference" between two models scored on the same draws.

    The bootstrap distribution of the difference is shifted to the null (centred on 0 by subtracting ``observed``),
    and the p-value is the share of shifted draws at least as extreme as the observed difference, with the +1
    correction that keeps it above 0: ``p = (#{b : |d_b - observed| >= |observed|} + 1) / (B + 1)``.

    Args:
        differences: ``(B,)`` per-draw differences (model a minus model b); NaN draws are dropped and B counts the
            rest.
        observed: the difference on the original (not resampled) cases.

    Returns:
        p in ``(0, 1]``; NaN when no draw is finite or ``observed`` is NaN.
    """
    differences = np.asarray(differences, dtype=float)
    differences = differences[~np.isnan(differences)]
    if differences.size == 0 or np.isnan(observed):
        return float("nan")
    extreme = np.count_nonzero(np.abs(differences - observed) >= abs(observed))
    return float((extreme + 1) / (differences.size + 1))


def bootstrap_metric(
    metric: Callable[..., float],
    arrays: Sequence[np.ndarray],
    indices: np.ndarray,
    progress: bool = False,
) -> np.ndarray:
    """A metric on every bootstrap draw.

    Args:
        metric: called as ``metric(*[a[idx] for a in arrays])`` per draw.
        arrays: arrays whose first axis is the N cases (e.g. truth ``(N,)`` and probabilities ``(N, C)``).
        indices: ``(B, N)`` draws from :func:`bootstrap_indices`.
        progress: show a tqdm progress bar.

    Returns:
        ``(B,)`` metric values; NaN for a draw where the metric raises ``ValueError``, ``ZeroDivisionError`` or
        ``FloatingPointError`` (one class only, no comparable pairs, ...).
    """
    values = np.full(len(indices), np.nan)
    for draw, idx in enumerate(tqdm(indices, desc="bootstrap", disable=not progress)):
        try:
            values[draw] = float(metric(*[np.asarray(a)[idx] for a in arrays]))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            continue
    return values
