"""Kaplan-Meier plots drawn as in survival papers, and the log-rank test against a hand computation."""

import numpy as np
import pytest
from scipy.stats import chi2

from source.plots import plt
from source.tasks.kaplan_meier import at_risk, kaplan_meier_figure, log_rank, step_curve


def hand_log_rank(events, times, groups):
    """Mantel's log-rank for two groups: sum over event times of (observed - expected) in group 1, over its variance."""
    observed_minus_expected, variance = 0.0, 0.0
    for t in np.unique(times[events]):
        at_risk_all = times >= t
        n, n1 = at_risk_all.sum(), (at_risk_all & (groups == 1)).sum()
        d = (events & (times == t)).sum()
        d1 = (events & (times == t) & (groups == 1)).sum()
        observed_minus_expected += d1 - d * n1 / n
        if n > 1:
            variance += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    statistic = observed_minus_expected**2 / variance
    return statistic, chi2.sf(statistic, 1)


def cohort(seed=0, n=40):
    rng = np.random.default_rng(seed)
    groups = (np.arange(n) % 2).astype(int)
    times = np.round(rng.exponential(np.where(groups == 1, 10.0, 25.0)), 1) + 0.1
    events = rng.random(n) < 0.7
    return events, times, groups


def test_log_rank_matches_a_hand_computation():
    events, times, groups = cohort()
    statistic, p_value = log_rank(events, times, groups)
    expected_statistic, expected_p = hand_log_rank(events, times, groups)
    assert statistic == pytest.approx(expected_statistic, rel=1e-6) and p_value == pytest.approx(expected_p, rel=1e-6)
    assert np.isnan(log_rank(events, times, np.zeros_like(groups))[1]), "one group: no test"


def test_curves_start_at_one_with_censoring_ticks_and_numbers_at_risk():
    events, times, groups = cohort()
    masks = [("low risk", groups == 0), ("high risk", groups == 1)]
    figure = kaplan_meier_figure(events, times, masks, "months", "test")
    curves, table = figure.axes
    steps = [line for line in curves.get_lines() if line.get_linestyle() != "None"]
    ticks = [line for line in curves.get_lines() if line.get_marker() == "|"]
    assert len(steps) == 2 and all(line.get_xdata()[0] == 0 and line.get_ydata()[0] == 1 for line in steps)
    for (_, mask), line in zip(masks, ticks, strict=True):
        assert len(line.get_xdata()) == int((mask & ~events).sum()), "one tick per censored patient"
        x, y = step_curve(events[mask], times[mask])
        censored = times[mask & ~events]
        np.testing.assert_allclose(line.get_ydata(), [y[x <= t][-1] for t in censored])
    texts = {(round(t.get_position()[0], 6), t.get_position()[1]): t.get_text() for t in table.texts}
    assert texts[(0.0, 1)] == str(int((groups == 0).sum())) and texts[(0.0, 0)] == str(int((groups == 1).sum()))
    assert "log-rank" in " ".join(t.get_text() for t in curves.texts)
    plt.close(figure)


def test_numbers_at_risk_count_patients_still_followed():
    assert at_risk(np.array([1.0, 2.0, 2.0, 5.0]), [0, 2, 3, 6]) == [4, 3, 1, 0]
