"""Adjustment of p-values for multiple comparisons."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order.

    With the m finite p-values sorted ascending, the i-th smallest (i = 1..m) is multiplied by ``m - i + 1``, capped
    at 1 and made non-decreasing along the sorted order (running maximum). NaNs stay NaN and do not count in m.

    Args:
        p_values: ``(M,)`` raw p-values in [0, 1] or NaN.

    Returns:
        ``(M,)`` adjusted p-values.
    """
    p = np.asarray(p_values, dtype=float)
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0.0) | (p[finite] > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = np.full(p.shape, np.nan)
    positions = np.flatnonzero(finite)
    order = positions[np.argsort(p[positions], kind="stable")]
    multipliers = np.arange(order.size, 0, -1)
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * multipliers), 1.0)
    return adjusted
