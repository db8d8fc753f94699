import math

import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.compare import compare_survival
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from source.data.labels import LabelTableError
from source.tasks.survival import SURVIVAL_PREFIX, SurvivalTask, nll_survival_loss, risk_from_logits
from source.tasks.survival_splits import assign_bins, survival_bin_edges


def direct_loss(logits, y, c, alpha):
    """The formula, one item at a time with Python floats."""
    total = 0.0
    for row, bin_, censored in zip(logits.tolist(), y, c, strict=True):
        hazards = [1 / (1 + math.exp(-v)) for v in row]
        survival = [1.0]
        for h in hazards:
            survival.append(survival[-1] * (1 - h))  # survival[k + 1] = S(k), survival[0] = S(-1) = 1
        clamp = lambda v: max(v, 1e-7)  # noqa: E731
        uncensored = -(1 - censored) * (math.log(clamp(survival[bin_])) + math.log(clamp(hazards[bin_])))
        censored_term = -censored * math.log(clamp(survival[bin_ + 1]))
        total += (1 - alpha) * (censored_term + uncensored) + alpha * uncensored
    return total / len(y)


@pytest.mark.parametrize("alpha", [0.0, 0.15])
def test_survival_loss_matches_the_formula(alpha):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=generator) * 3
    logits[0] = 40.0  # saturated hazards exercise the clamp
    y = [0, 1, 2, 3] * 3
    c = [0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1]
    loss = nll_survival_loss(logits.double(), torch.tensor(y), torch.tensor(c), alpha)
    assert loss.item() == pytest.approx(direct_loss(logits.double(), y, c, alpha), rel=1e-9)


def test_risk_is_minus_the_sum_of_survival():
    logits = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    expected = [
        -(0.5 + 0.25),
        -((1 - torch.sigmoid(torch.tensor(5.0))).item() + (1 - torch.sigmoid(torch.tensor(5.0))).item() ** 2),
    ]
    torch.testing.assert_close(risk_from_logits(logits), torch.tensor(expected))


def test_predictions_hold_the_survival_probability_at_each_upper_bin_edge():
    edges = np.array([0.1, 12.5, 30.0, 61.25, 120.000001])
    logits = torch.tensor([0.3, -1.2, 2.0, -0.4])
    columns = SurvivalTask(4, "months", edges).predict(logits)
    names = [f"survival_at_{t!r}" for t in (12.5, 30.0, 61.25, 120.000001)]
    assert list(columns) == ["risk", *names] and all(name.startswith(SURVIVAL_PREFIX) for name in names)
    assert [float(name.removeprefix(SURVIVAL_PREFIX)) for name in names] == edges[1:].tolist()
    hazards = [1 / (1 + math.exp(-v)) for v in logits.tolist()]
    expected = np.cumprod([1 - h for h in hazards])
    np.testing.assert_allclose([columns[name] for name in names], expected, rtol=1e-6)
    assert columns["risk"] == float(-torch.cumprod(1 - torch.sigmoid(logits), dim=-1).sum())  # as before, bit for bit
    assert columns["risk"] == pytest.approx(-expected.sum(), rel=1e-6)
    assert SurvivalTask(4, "months").predict(logits) == {"risk": columns["risk"]}


def test_an_ensemble_averages_the_survival_probabilities_every_model_has():
    first = pd.DataFrame({"risk": [-1.0, -2.0], "survival_at_10.0": [0.5, 0.9], "survival_at_20.0": [0.2, 0.8]})
    second = pd.DataFrame({"risk": [-3.0, -1.0], "survival_at_10.0": [0.7, 0.5], "survival_at_25.0": [0.1, 0.3]})
    merged = SurvivalTask(2, "months").ensemble([first, second])
    assert list(merged.columns) == ["risk", "survival_at_10.0"]
    np.testing.assert_allclose(merged.risk, [-2.0, -1.5])
    np.testing.assert_allclose(merged["survival_at_10.0"], [0.6, 0.7])


def test_c_index_is_patient_level_and_equals_scikit_survival():
    rng = np.random.default_rng(0)
    patients = pd.DataFrame(
        {
            "case_id": [f"p{i}" for i in range(40)],
            "censorship": rng.integers(0, 2, 40),
            "months": rng.uniform(1, 60, 40),
        }
    )
    slides = patients.loc[patients.index.repeat(2)].reset_index(drop=True)
    slides["risk"] = rng.normal(size=len(slides))
    task = SurvivalTask(4, "months")
    metrics = task.metrics(slides)
    mean_risk = slides.groupby("case_id", sort=False).risk.mean().to_numpy()
    expected = concordance_index_censored(patients.censorship.to_numpy() == 0, patients.months.to_numpy(), mean_risk)[0]
    assert metrics["c_index"] == pytest.approx(expected)
    high = mean_risk > np.median(mean_risk)
    statistic, p_value = compare_survival(
        Surv.from_arrays(patients.censorship.to_numpy() == 0, patients.months.to_numpy()), high
    )
    assert metrics["logrank_statistic"] == pytest.approx(statistic) and metrics["logrank_p"] == pytest.approx(p_value)


def test_time_dependent_auc_uses_training_reference():
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    rng = np.random.default_rng(1)
    train = pd.DataFrame(
        {
            "case_id": [f"t{i}" for i in range(60)],
            "censorship": rng.integers(0, 2, 60),
            "months": rng.uniform(1, 80, 60),
        }
    )
    test = pd.DataFrame(
        {
            "case_id": [f"s{i}" for i in range(30)],
            "censorship": rng.integers(0, 2, 30),
            "months": rng.uniform(2, 70, 30),
        }
    )
    test["risk"] = -test.months + rng.normal(scale=5, size=30)
    edges = np.array([0.0, 20.0, 40.0, 60.0, 100.0])
    task = SurvivalTask(4, "months", edges)
    task.set_training_outcomes(train)
    metrics = task.metrics(test)
    expected = cumulative_dynamic_auc(
        Surv.from_arrays(train.censorship == 0, train.months),
        Surv.from_arrays(test.censorship == 0, test.months),
        test.risk,
        [20.0, 40.0, 60.0],
    )[1]
    assert metrics["auc"] == pytest.approx(expected)
    assert metrics["auc"] > 0.8


def test_bins_come_from_the_training_split_only():
    train = pd.DataFrame(
        {"case_id": list("abcdefgh"), "censorship": [0, 0, 0, 0, 0, 0, 1, 1], "t": [1, 2, 3, 4, 5, 6, 100, 200.0]}
    )
    test = pd.DataFrame({"case_id": ["x", "y"], "censorship": [0, 0], "t": [0.1, 500.0]})
    edges = survival_bin_edges(train, "t", 2, [train, test])
    np.testing.assert_allclose(edges[1:-1], [np.quantile([1, 2, 3, 4, 5, 6], 0.5)])
    assert edges[0] < 0.1 and edges[-1] > 500
    other_test = test.assign(t=[50.0, 60.0])
    np.testing.assert_allclose(survival_bin_edges(train, "t", 2, [train, other_test])[1:-1], edges[1:-1])
    np.testing.assert_array_equal(assign_bins([0.1, 3.4, 3.6, 500.0], edges), [0, 0, 1, 1])
    with pytest.raises(LabelTableError, match="distinct event times"):
        survival_bin_edges(train, "t", 7, [train])


def test_metrics_of_a_split_without_comparable_pairs_are_nan():
    predictions = pd.DataFrame(
        {"case_id": ["a", "b", "c"], "censorship": [0, 1, 1], "months": [30.0, 5.0, 10.0], "risk": [0.1, 0.2, 0.3]}
    )
    metrics = SurvivalTask(4, "months").metrics(predictions)
    assert np.isnan(metrics["c_index"]) and np.isnan(metrics["auc"]) and np.isnan(metrics["logrank_p"])
