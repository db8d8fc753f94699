"""Kaplan-Meier curves as survival papers draw them, and the log-rank test between risk groups.

Curves start at (0, 1), censored patients are ticks on their curve, a numbers-at-risk table sits under
the time axis, and the log-rank statistic and p-value are printed on the plot (and returned for
``metrics.json``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sksurv.compare import compare_survival
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv


def log_rank(events: np.ndarray, times: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Log-rank chi-square statistic and p-value between ``groups`` (scikit-survival); NaN when undefined.

    Args:
        events: ``(N,)`` bool, True for an event (death), False when censored.
        times: ``(N,)`` follow-up times.
        groups: ``(N,)`` group labels.
    """
    if len(np.unique(groups)) < 2 or not events.any():
        return float("nan"), float("nan")
    try:
        statistic, p_value = compare_survival(Surv.from_arrays(events, times), groups)
    except (ValueError, np.linalg.LinAlgError):  # no variance: e.g. every event before the other group enters
        return float("nan"), float("nan")
    return float(statistic), float(p_value)


def step_curve(events: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan-Meier step function from ``(0, 1)``: ``(x, y)`` to draw with ``where='post'``."""
    x, y = kaplan_meier_estimator(events, times)
    return np.concatenate([[0.0], x]), np.concatenate([[1.0], y])


def survival_at(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The step function ``(x, y)`` (right-continuous) evaluated at times ``t``."""
    return y[np.searchsorted(x, t, side="right") - 1]


def at_risk(times: np.ndarray, ticks: Sequence[float]) -> list[int]:
    """Patients still followed (time >= t) at each tick."""
    return [int((times >= t).sum()) for t in ticks]


def kaplan_meier_figure(
    events: np.ndarray, times: np.ndarray, groups: Sequence[tuple[str, np.ndarray]], time_label: str, title: str
):
    """A Kaplan-Meier plot with censoring ticks, a numbers-at-risk table and the log-rank test.

    Args:
        events: ``(N,)`` bool, True for an event.
        times: ``(N,)`` follow-up times.
        groups: ``(name, mask)`` pairs, each mask ``(N,)`` bool; empty groups are left out.
        time_label: the x axis label (the time column).
        title: the plot title.

    Returns:
        the matplotlib Figure: axes[0] the curves, axes[1] the numbers-at-risk table.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    groups = [(name, mask) for name, mask in groups if mask.any()]
    figure, (axis, table) = plt.subplots(2, 1, figsize=(6.5, 5.2), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    for index, (name, mask) in enumerate(groups):
        colour = f"C{index}"
        x, y = step_curve(events[mask], times[mask])
        axis.step(x, y, where="post", color=colour, label=f"{name} (n={int(mask.sum())})")
        censored = times[mask & ~events]
        axis.plot(censored, survival_at(x, y, censored), linestyle="none", marker="|", markersize=8, color=colour)
    labels = np.zeros(len(times), dtype=int)
    for index, (_, mask) in enumerate(groups):
        labels[mask] = index
    statistic, p_value = log_rank(events, times, labels) if len(groups) > 1 else (float("nan"), float("nan"))
    if np.isfinite(p_value):
        axis.text(0.02, 0.04, f"log-rank chi2 = {statistic:.2f}, p = {p_value:.3g}", transform=axis.transAxes)
    axis.set(ylabel="survival probability", title=title, ylim=(0, 1.05), xlim=(0, float(times.max()) * 1.02))
    axis.xaxis.set_major_locator(MaxNLocator(nbins=6))
    axis.legend(loc="upper right")
    ticks = [t for t in axis.get_xticks() if 0 <= t <= times.max()]
    table.set(ylim=(-0.5, len(groups) - 0.5), yticks=range(len(groups)), yticklabels=[name for name, _ in groups][::-1])
    table.set_xlabel(time_label)
    table.set_title("number at risk", fontsize=9, loc="left")
    for row, (_, mask) in enumerate(groups):
        for t, count in zip(ticks, at_risk(times[mask], ticks), strict=True):
            table.text(t, len(groups) - 1 - row, str(count), ha="center", va="center", fontsize=9)
    for side in ("top", "right", "left"):
        table.spines[side].set_visible(False)
    table.tick_params(axis="y", length=0, pad=16)
    for index, label in enumerate(table.get_yticklabels()[::-1]):
        label.set_color(f"C{index}")
    return figure
