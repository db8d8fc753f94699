"""The statistics of the model comparison, each against an independent computation (scipy, scikit-learn,
scikit-survival, or the textbook formula written out here)."""

import numpy as np
import pytest
from scipy.stats import kstest, norm, pearsonr, ttest_rel
from scipy.stats import t as student_t
from sklearn.metrics import average_precision_score, balanced_accuracy_score, brier_score_loss, roc_auc_score
from sklearn.preprocessing import label_binarize
from sksurv.metrics import concordance_index_censored

from source.study.bootstrap import bootstrap_indices, bootstrap_metric, paired_bootstrap_p_value, percentile_interval
from source.study.calibration import brier_score, expected_calibration_error, reliability_curve
from source.study.delong import delong_auc_variance, delong_test
from source.study.fold_tests import corrected_resampled_t_test, t_interval
from source.study.metrics import (
    CLASSIFICATION_METRICS,
    ECE_BINS,
    HIGHER_IS_BETTER,
    REGRESSION_METRICS,
    c_index,
    classification_metrics,
    fold_mean_c_index,
    integrated_brier,
)
from source.study.multiple import holm

# -- data ------------------------------------------------------------------------------------------------------------


def binary_cases(n=300, seed=0, ties=False):
    """Binary truth (N,) and a probability table (N, 2) that carries some signal."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    p1 = 1.0 / (1.0 + np.exp(-(1.2 * truth - 0.6 + rng.normal(size=n))))
    if ties:
        p1 = np.round(p1, 1)
    return truth, np.stack([1.0 - p1, p1], axis=1)


def multiclass_cases(n=400, n_classes=4, seed=1):
    """Class indices (N,) and softmax probabilities (N, C) that favour the true class."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), truth] += 1.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, probabilities


def survival_cases(n=120, seed=2, n_folds=1):
    """Continuous follow-up times (N,), events (N,), risks (N,) with ties, and fold ids (N,)."""
    rng = np.random.default_rng(seed)
    hazard = np.exp(rng.normal(size=n))
    event_time = rng.exponential(1.0 / hazard)
    censor_time = rng.exponential(2.0, size=n)
    time = np.minimum(event_time, censor_time)
    event = event_time <= censor_time
    risk = np.round(np.log(hazard) + rng.normal(scale=0.5, size=n), 1)
    folds = np.arange(n) % n_folds
    return time, event, risk, folds


# -- bootstrap -------------------------------------------------------------------------------------------------------


def test_bootstrap_indices_resample_within_each_stratum():
    strata = np.array(["a"] * 3 + ["b"] * 5 + ["c"] * 12)[np.random.default_rng(0).permutation(20)]
    indices = bootstrap_indices(500, strata, seed=3)
    assert indices.shape == (500, 20) and np.issubdtype(indices.dtype, np.integer)
    # every position is filled from its own stratum, so each draw keeps every stratum's size
    assert np.all(strata[indices] == strata[None, :])
    for label in "abc":
        assert np.all((strata[indices] == label).sum(axis=1) == (strata == label).sum())
    # with replacement and uniform: each case is drawn once per draw on average, and repeats occur
    counts = np.stack([np.bincount(draw, minlength=20) for draw in indices])
    np.testing.assert_allclose(counts.mean(axis=0), 1.0, atol=0.2)
    assert np.any(counts.max(axis=1) > 1)


def test_bootstrap_indices_are_reproducible_by_seed():
    strata = np.repeat([0, 1], [40, 60])
    np.testing.assert_array_equal(bootstrap_indices(50, strata, 7), bootstrap_indices(50, strata, 7))
    assert not np.array_equal(bootstrap_indices(50, strata, 7), bootstrap_indices(50, strata, 8))


def test_percentile_interval_matches_numpy_and_ignores_nans():
    values = np.random.default_rng(0).normal(size=1000)
    low, high = percentile_interval(np.r_[values, np.nan, np.nan], 0.9)
    np.testing.assert_allclose([low, high], np.percentile(values, [5.0, 95.0]), rtol=0, atol=1e-12)
    assert all(np.isnan(percentile_interval(np.full(10, np.nan), 0.95)))


def test_percentile_interval_of_a_bootstrapped_mean_covers_the_estimate_like_the_normal_interval():
    sample = np.random.default_rng(1).normal(loc=3.0, scale=2.0, size=200)
    draws = bootstrap_metric(np.mean, [sample], bootstrap_indices(2000, np.zeros(200), seed=0))
    low, high = percentile_interval(draws, 0.95)
    half_width = norm.ppf(0.975) * sample.std(ddof=1) / np.sqrt(sample.size)
    assert low < sample.mean() < high
    np.testing.assert_allclose([low, high], [sample.mean() - half_width, sample.mean() + half_width], atol=0.05)


def test_paired_bootstrap_p_value_counts_shifted_draws_at_least_as_extreme():
    differences = np.array([0.5, 0.25, -0.25, 0.75, 0.0, np.nan, 0.25, 0.125])
    observed = 0.25
    finite = differences[~np.isnan(differences)]
    extreme = sum(abs(d - observed) >= abs(observed) for d in finite)  # 0.5, -0.25, 0.75 and 0.0 (ties count)
    assert extreme == 4
    assert paired_bootstrap_p_value(differences, observed) == pytest.approx((extreme + 1) / (finite.size + 1))
    assert paired_bootstrap_p_value(differences, 0.0) == 1.0
    # a difference far from 0 in every draw: the smallest p the draws can give
    assert paired_bootstrap_p_value(np.full(999, 0.5) + np.linspace(-0.01, 0.01, 999), 0.5) == pytest.approx(1e-3)
    assert np.isnan(paired_bootstrap_p_value(np.full(3, np.nan), 0.1))


def test_bootstrap_metric_evaluates_each_draw_and_gives_nan_where_the_metric_fails():
    truth, probabilities = binary_cases(60)
    indices = bootstrap_indices(30, truth, seed=0)
    values = bootstrap_metric(roc_auc_score, [truth, probabilities[:, 1]], indices, progress=True)
    expected = [roc_auc_score(truth[idx], probabilities[idx, 1]) for idx in indices]
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)
    single_class = np.tile(np.flatnonzero(truth == 0)[:5], (2, 12))  # draws of negatives only: AUPRC undefined
    auprc = CLASSIFICATION_METRICS["auprc"]
    assert np.all(np.isnan(bootstrap_metric(auprc, [truth, probabilities], single_class)))
    with pytest.raises(ValueError):
        auprc(truth[single_class[0]], probabilities[single_class[0]])


def test_survival_bootstrap_within_folds_keeps_folds_in_place():
    time, event, risk, folds = survival_cases(n=150, n_folds=5)
    indices = bootstrap_indices(20, folds, seed=1)
    assert np.all(folds[indices] == folds)
    values = bootstrap_metric(fold_mean_c_index, [time, event, risk, folds], indices)
    expected = [
        np.mean([concordance_index_censored(e[f == k], t[f == k], r[f == k])[0] for k in range(5)])
        for t, e, r, f in ((time[i], event[i], risk[i], folds[i]) for i in indices)
    ]
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)


# -- DeLong ----------------------------------------------------------------------------------------------------------


def direct_delong(truth, scores):
    """DeLong et al. (1988) written out: psi over every (positive, negative) pair, components, covariance."""
    positives, negatives = scores[:, truth == 1], scores[:, truth == 0]
    psi = (positives[:, :, None] > negatives[:, None, :]) + 0.5 * (positives[:, :, None] == negatives[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    covariance = np.cov(v10) / positives.shape[1] + np.cov(v01) / negatives.shape[1]
    return psi.mean(axis=(1, 2)), np.atleast_2d(covariance)


def correlated_models(n=150, seed=0, round_to=None):
    """Binary truth (N,) and scores (3, N) of three correlated models, optionally rounded to create ties."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    shared = rng.normal(size=n)
    scores = np.stack([strength * truth + shared + rng.normal(size=n) for strength in (1.5, 1.0, 0.3)])
    return truth, (np.round(scores, round_to) if round_to is not None else scores)


@pytest.mark.parametrize("round_to", [None, 0])
def test_delong_matches_the_direct_structural_components(round_to):
    truth, scores = correlated_models(round_to=round_to)
    aucs, covariance = delong_auc_variance(truth, scores)
    direct_aucs, direct_covariance = direct_delong(truth, scores)
    np.testing.assert_allclose(aucs, direct_aucs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(covariance, direct_covariance, rtol=0, atol=1e-10)
    np.testing.assert_allclose(aucs, [roc_auc_score(truth, s) for s in scores], rtol=0, atol=1e-12)


def test_delong_single_model_and_the_hanley_mcneil_rating_example():
    # Hanley & McNeil (1982): 58 normal and 51 abnormal cases rated 1..5; the published area is 0.893
    truth = np.repeat([0, 1], [58, 51])
    ratings = np.r_[np.repeat(np.arange(1, 6), [33, 6, 6, 11, 2]), np.repeat(np.arange(1, 6), [3, 2, 2, 11, 33])]
    aucs, covariance = delong_auc_variance(truth, ratings)
    assert aucs.shape == (1,) and covariance.shape == (1, 1)
    assert round(float(aucs[0]), 3) == 0.893
    direct_aucs, direct_covariance = direct_delong(truth, ratings[None, :])
    np.testing.assert_allclose(covariance, direct_covariance, rtol=0, atol=1e-12)


def test_delong_test_z_is_the_difference_over_the_variance_of_the_difference():
    truth, scores = correlated_models(seed=3)
    difference, z, p = delong_test(truth, scores[0], scores[1])
    aucs, covariance = direct_delong(truth, scores[:2])
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    assert difference == pytest.approx(aucs[0] - aucs[1], abs=1e-12)
    assert z == pytest.approx((aucs[0] - aucs[1]) / np.sqrt(variance), rel=1e-10)
    assert p == pytest.approx(2 * norm.sf(abs(z)), rel=1e-10)
    assert delong_test(truth, scores[0], scores[0]) == (0.0, 0.0, 1.0)
    assert delong_test(truth, scores[0], 2 * scores[0] + 1) == (0.0, 0.0, 1.0)  # same ranking


def test_delong_p_values_are_uniform_under_the_null():
    rng = np.random.default_rng(11)
    p_values = []
    for _ in range(2000):
        truth = rng.integers(0, 2, 80)
        shared = rng.normal(size=80) + truth
        # two exchangeable models: equal true AUCs, correlated through the shared part
        p_values.append(delong_test(truth, shared + rng.normal(size=80), shared + rng.normal(size=80))[2])
    p_values = np.array(p_values)
    assert kstest(p_values, "uniform").pvalue > 0.01
    assert 0.035 < np.mean(p_values < 0.05) < 0.065


def test_delong_needs_two_cases_of_each_class():
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong_auc_variance(np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]))


# -- fold tests ------------------------------------------------------------------------------------------------------


def test_t_interval_matches_scipy():
    values = np.array([0.81, 0.77, 0.85, 0.79, 0.83])
    mean, std, low, high = t_interval(values, 0.95)
    expected = student_t.interval(0.95, values.size - 1, loc=values.mean(), scale=values.std(ddof=1) / np.sqrt(5))
    assert mean == pytest.approx(values.mean(), abs=1e-15) and std == pytest.approx(values.std(ddof=1), abs=1e-15)
    np.testing.assert_allclose([low, high], expected, rtol=0, atol=1e-12)
    single = t_interval(np.array([0.8]), 0.95)
    assert single[0] == 0.8 and all(np.isnan(single[1:]))


def test_corrected_resampled_t_test_matches_the_formula_and_reduces_to_the_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.80, 0.03, 10), rng.normal(0.78, 0.03, 10)
    d = a - b
    ratio = 1 / 9  # 10-fold cross-validation
    t, p = corrected_resampled_t_test(d, ratio)
    expected_t = d.mean() / np.sqrt((1 / 10 + ratio) * d.var(ddof=1))
    assert t == pytest.approx(expected_t, rel=1e-12)
    assert p == pytest.approx(2 * student_t.sf(abs(expected_t), 9), rel=1e-12)
    plain = ttest_rel(a, b)
    t0, p0 = corrected_resampled_t_test(d, 0.0)
    assert t0 == pytest.approx(plain.statistic, rel=1e-12) and p0 == pytest.approx(plain.pvalue, rel=1e-12)
    assert abs(t) < abs(t0) and p > p0  # the correction is conservative


def test_corrected_resampled_t_test_with_zero_variance():
    assert corrected_resampled_t_test(np.zeros(5), 0.25) == (0.0, 1.0)
    assert corrected_resampled_t_test(np.full(5, 0.02), 0.25) == (np.inf, 0.0)
    assert corrected_resampled_t_test(np.full(5, -0.02), 0.25) == (-np.inf, 0.0)


# -- Holm ------------------------------------------------------------------------------------------------------------


def test_holm_worked_examples():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=0, atol=1e-15)
    # 0.01 * 3 = 0.03, 0.02 * 2 = 0.04, 0.04 * 1 = 0.04
    np.testing.assert_allclose(holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04], rtol=0, atol=1e-15)
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    adjusted = holm([0.01, np.nan, 0.04, 0.03, 0.005])  # NaN neither adjusted nor counted
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02], rtol=0, atol=1e-15)


def test_holm_rejects_exactly_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = np.r_[rng.uniform(0, 0.02, 3), rng.uniform(0, 1, 5)]
        adjusted = holm(p)
        assert np.all(np.diff(adjusted[np.argsort(p, kind="stable")]) >= 0) and np.all(adjusted <= 1)
        for alpha in (0.01, 0.05, 0.1):
            rejected = np.zeros(p.size, dtype=bool)
            for k, i in enumerate(np.argsort(p)):
                if p[i] > alpha / (p.size - k):
                    break
                rejected[i] = True
            np.testing.assert_array_equal(adjusted <= alpha, rejected)


# -- calibration -----------------------------------------------------------------------------------------------------


def direct_ece(confidence, outcome, n_bins):
    """ECE over equal-count bins: sizes N // n_bins, the first N % n_bins bins one larger."""
    order = np.argsort(confidence, kind="stable")
    sizes = [len(confidence) // n_bins + (k < len(confidence) % n_bins) for k in range(n_bins)]
    total, start = 0.0, 0
    for size in sizes:
        members = order[start : start + size]
        start += size
        total += size / len(confidence) * abs(outcome[members].mean() - confidence[members].mean())
    return total


def test_ece_hand_example():
    truth, p1 = np.array([0, 1, 1, 0]), np.array([0.1, 0.4, 0.6, 0.9])
    # bins {0.1, 0.4}: |0.5 - 0.25|; {0.6, 0.9}: |0.5 - 0.75|
    assert expected_calibration_error(truth, p1, 2) == pytest.approx(0.25, abs=1e-15)


def test_ece_binary_and_top_label_match_the_direct_computation():
    truth, probabilities = binary_cases(n=203)
    expected = direct_ece(probabilities[:, 1], (truth == 1).astype(float), 10)
    assert expected_calibration_error(truth, probabilities[:, 1], 10) == pytest.approx(expected, abs=1e-12)
    truth, probabilities = multiclass_cases(n=157)
    confidence, correct = probabilities.max(axis=1), (probabilities.argmax(axis=1) == truth).astype(float)
    assert expected_calibration_error(truth, probabilities, 7) == pytest.approx(
        direct_ece(confidence, correct, 7), abs=1e-12
    )


def test_ece_is_small_for_calibrated_probabilities():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20000)
    truth = (rng.uniform(size=p.size) < p).astype(int)
    assert expected_calibration_error(truth, p, 10) < 0.02
    assert expected_calibration_error(truth, np.clip(p + 0.2, 0, 1), 10) > 0.1


def test_reliability_curve_bins():
    truth, probabilities = binary_cases(n=23)
    curve = reliability_curve(truth, probabilities[:, 1], 5)
    assert list(curve.columns) == ["bin", "count", "mean_predicted", "observed_frequency"]
    assert curve["count"].tolist() == [5, 5, 5, 4, 4]
    order = np.argsort(probabilities[:, 1], kind="stable")
    np.testing.assert_allclose(curve["mean_predicted"].iloc[0], probabilities[order[:5], 1].mean())
    np.testing.assert_allclose(curve["observed_frequency"].iloc[-1], truth[order[-4:]].mean())
    assert np.all(np.diff(curve["mean_predicted"]) >= 0)
    assert len(reliability_curve(truth[:3], probabilities[:3, 1], 5)) == 3


def test_brier_binary_and_multiclass():
    truth, probabilities = binary_cases()
    assert brier_score(truth, probabilities[:, 1]) == pytest.approx(np.mean((probabilities[:, 1] - truth) ** 2))
    # for two classes the multiclass (sum over classes) form is twice the binary one
    assert brier_score(truth, probabilities) == pytest.approx(2 * brier_score(truth, probabilities[:, 1]), abs=1e-12)
    truth, probabilities = multiclass_cases()
    one_hot = np.eye(probabilities.shape[1])[truth]
    expected = np.mean(np.sum((probabilities - one_hot) ** 2, axis=1))
    assert brier_score(truth, probabilities) == pytest.approx(expected, abs=1e-12)
    sklearn_form = brier_score_loss(truth, probabilities, labels=np.arange(4), scale_by_half=False)
    assert brier_score(truth, probabilities) == pytest.approx(sklearn_form, abs=1e-12)


# -- metrics ---------------------------------------------------------------------------------------------------------


def test_binary_classification_metrics():
    truth, probabilities = binary_cases(ties=True)
    metrics = CLASSIFICATION_METRICS
    assert metrics["auroc"](truth, probabilities) == pytest.approx(roc_auc_score(truth, probabilities[:, 1]), abs=1e-12)
    for draw in bootstrap_indices(20, truth, seed=0):  # resampled cases carry many ties
        expected = roc_auc_score(truth[draw], probabilities[draw, 1])
        assert metrics["auroc"](truth[draw], probabilities[draw]) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="one class"):
        metrics["auroc"](np.zeros(5, dtype=int), probabilities[:5])
    assert metrics["auprc"](truth, probabilities) == pytest.approx(
        average_precision_score(truth, probabilities[:, 1]), abs=1e-12
    )
    predicted = probabilities.argmax(axis=1)
    recalls = [np.mean(predicted[truth == c] == c) for c in (0, 1)]
    assert metrics["balanced_accuracy"](truth, probabilities) == pytest.approx(np.mean(recalls), abs=1e-12)
    assert metrics["brier"](truth, probabilities) == pytest.approx(np.mean((probabilities[:, 1] - truth) ** 2))
    expected_ece = direct_ece(probabilities[:, 1], truth.astype(float), ECE_BINS)
    assert metrics["ece"](truth, probabilities) == pytest.approx(expected_ece, abs=1e-12)
    expected_ece_5 = direct_ece(probabilities[:, 1], truth.astype(float), 5)
    assert classification_metrics(5)["ece"](truth, probabilities) == pytest.approx(expected_ece_5, abs=1e-12)


def test_multiclass_classification_metrics():
    truth, probabilities = multiclass_cases()
    metrics = CLASSIFICATION_METRICS
    sklearn_auroc = roc_auc_score(truth, probabilities, multi_class="ovr", average="macro")
    assert metrics["auroc"](truth, probabilities) == pytest.approx(sklearn_auroc, abs=1e-12)
    assert metrics["auprc"](truth, probabilities) == pytest.approx(
        average_precision_score(label_binarize(truth, classes=range(4)), probabilities, average="macro"), abs=1e-12
    )
    predicted = probabilities.argmax(axis=1)
    recalls = [np.mean(predicted[truth == c] == c) for c in range(4)]
    assert metrics["balanced_accuracy"](truth, probabilities) == pytest.approx(np.mean(recalls), abs=1e-12)
    for draw in bootstrap_indices(10, truth, seed=0):
        expected = balanced_accuracy_score(truth[draw], predicted[draw])
        assert metrics["balanced_accuracy"](truth[draw], probabilities[draw]) == pytest.approx(expected, abs=1e-12)
    # class 3 predicted but absent from truth: only classes 0, 1, 2 count (recalls 1/2, 1, 0)
    hand = np.eye(4)[[0, 3, 1, 1, 0]]
    assert metrics["balanced_accuracy"](np.array([0, 0, 1, 1, 2]), hand) == pytest.approx(0.5, abs=1e-15)
    one_hot = np.eye(4)[truth]
    assert metrics["brier"](truth, probabilities) == pytest.approx(np.mean(((probabilities - one_hot) ** 2).sum(1)))
    top_label = direct_ece(probabilities.max(axis=1), (predicted == truth).astype(float), ECE_BINS)
    assert metrics["ece"](truth, probabilities) == pytest.approx(top_label, abs=1e-12)
    missing_class = truth != 3
    with pytest.raises(ValueError):
        metrics["auprc"](truth[missing_class], probabilities[missing_class])


def test_regression_metrics():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    predicted = truth + rng.normal(scale=0.5, size=200)
    error = predicted - truth
    assert REGRESSION_METRICS["mae"](truth, predicted) == pytest.approx(np.mean(np.abs(error)), abs=1e-12)
    assert REGRESSION_METRICS["rmse"](truth, predicted) == pytest.approx(np.sqrt(np.mean(error**2)), abs=1e-12)
    r2 = 1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2)
    assert REGRESSION_METRICS["r2"](truth, predicted) == pytest.approx(r2, abs=1e-12)
    assert REGRESSION_METRICS["pearson"](truth, predicted) == pytest.approx(np.corrcoef(truth, predicted)[0, 1])
    assert REGRESSION_METRICS["pearson"](truth, predicted) == pytest.approx(pearsonr(truth, predicted)[0], abs=1e-12)


def direct_harrell_c(time, event, risk):
    """Harrell's C over comparable pairs (i had the event, j outlived i); risk ties count 1/2."""
    numerator = denominator = 0.0
    for i in np.flatnonzero(event):
        later = time > time[i]
        denominator += later.sum()
        numerator += np.sum(risk[later] < risk[i]) + 0.5 * np.sum(risk[later] == risk[i])
    return numerator / denominator


def test_c_index_and_fold_mean():
    time, event, risk, folds = survival_cases(n_folds=3)
    assert c_index(time, event, risk) == pytest.approx(direct_harrell_c(time, event, risk), abs=1e-12)
    assert c_index(time, event, risk) == pytest.approx(concordance_index_censored(event, time, risk)[0], abs=1e-12)
    per_fold = [direct_harrell_c(time[folds == f], event[folds == f], risk[folds == f]) for f in range(3)]
    assert fold_mean_c_index(time, event, risk, folds) == pytest.approx(np.mean(per_fold), abs=1e-12)
    with pytest.raises(ValueError):
        c_index(time, np.zeros_like(event), risk)


def censoring_survival(train_time, train_event, t):
    """Kaplan-Meier of the censoring times of the training data at t (distinct continuous times)."""
    censor_times = np.sort(train_time[~train_event])
    at_risk = np.array([np.sum(train_time >= c) for c in censor_times])
    return np.prod(1.0 - 1.0 / at_risk[censor_times <= t])


def test_integrated_brier_matches_the_ipcw_formula():
    rng = np.random.default_rng(5)
    train_time, train_event, _, _ = survival_cases(n=200, seed=6)
    test_time, test_event, risk, _ = survival_cases(n=80, seed=7)
    test_time = np.minimum(test_time, 0.95 * train_time.max())
    rate = np.exp(risk + rng.normal(scale=0.3, size=risk.size))
    times = np.linspace(np.quantile(test_time, 0.1), np.quantile(test_time, 0.9), 15)
    survival = np.exp(-np.outer(rate, times))  # (N, T)
    scores = []
    for k, t in enumerate(times):
        case = (test_time <= t) & test_event
        control = test_time > t
        weight_case = np.array([1 / censoring_survival(train_time, train_event, y) for y in test_time])
        weight_control = 1 / censoring_survival(train_time, train_event, t)
        scores.append(
            np.mean(case * survival[:, k] ** 2 * weight_case + control * (1 - survival[:, k]) ** 2 * weight_control)
        )
    expected = np.trapezoid(scores, times) / (times[-1] - times[0])
    value = integrated_brier(train_time, train_event, test_time, test_event, survival, times)
    assert value == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="follow-up time of test data"):
        beyond = np.r_[times[:-1], test_time.max()]
        integrated_brier(train_time, train_event, test_time, test_event, survival, beyond)


def test_higher_is_better_covers_every_metric():
    names = set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS) | {"c_index", "integrated_brier"}
    assert set(HIGHER_IS_BETTER) == names
    assert not any(HIGHER_IS_BETTER[name] for name in ("brier", "ece", "mae", "rmse", "integrated_brier"))
