"""Regression: metrics against direct formulas, labels checked row by row, scaling from the training split only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from source.data.features import FeatureBank
from source.data.labels import LabelTableError
from source.engines.training_job import run_training_job
from source.tasks.regression import RegressionTask
from source.tasks.regression_splits import TARGET, Scaling, regression_splits
from tests.training_data import job_config, regression_data


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    order = np.argsort(values, kind="stable")
    result = np.empty(len(values))
    result[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        result[tied] = result[tied].mean()
    return result


def test_metrics_equal_their_formulas():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=40) * 3 + 7
    predicted = truth + rng.normal(size=40)
    predicted[:3] = predicted[3]  # ties for Spearman
    metrics = RegressionTask(Scaling(0.0, 1.0)).metrics(pd.DataFrame({TARGET: truth, "prediction": predicted}))
    error = predicted - truth
    centred_t, centred_p = truth - truth.mean(), predicted - predicted.mean()
    pearson = (centred_t @ centred_p) / np.sqrt((centred_t @ centred_t) * (centred_p @ centred_p))
    rank_t, rank_p = ranks(truth) - ranks(truth).mean(), ranks(predicted) - ranks(predicted).mean()
    spearman = (rank_t @ rank_p) / np.sqrt((rank_t @ rank_t) * (rank_p @ rank_p))
    expected = {
        "mae": np.abs(error).mean(),
        "rmse": np.sqrt((error**2).mean()),
        "r2": 1 - (error**2).sum() / (centred_t**2).sum(),
        "pearson": pearson,
        "spearman": spearman,
    }
    assert metrics == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_losses_on_standardised_targets_and_predictions_in_label_units(loss):
    task = RegressionTask(Scaling(10.0, 4.0), loss, huber_delta=0.5)
    logits, target = torch.tensor([1.5]), {"value": torch.tensor(0.25)}
    difference = 1.25
    expected = {"mse": difference**2, "l1": difference, "huber": 0.5 * (difference - 0.5 * 0.5)}[loss]
    assert float(task.loss(logits, target, training=True)) == pytest.approx(expected)
    assert task.predict(logits) == {"prediction": pytest.approx(16.0)}


@pytest.mark.parametrize(
    "values, message",
    [
        (["1.5", "", "2"], r"blank target in row\(s\) 3"),
        (["1.5", "high", "2"], r"target in row\(s\) 3 is not a number \(\['high'\]\)"),
        (["1.5", "2", "inf"], r"target in row\(s\) 4 is not finite"),
    ],
)
def test_a_bad_label_names_the_file_and_rows(tmp_path, values, message):
    csv = tmp_path / "train.csv"
    pd.DataFrame({"slide_id": ["a", "b", "c"], "target": values}).to_csv(csv, index=False)
    with pytest.raises(LabelTableError, match=f"{csv}: {message}"):
        regression_splits({"train": str(csv)}, FeatureBank(tmp_path, "global", 192), "target")


def test_scaling_comes_from_the_training_split_only(tmp_path):
    paths = regression_data(tmp_path, n_slides=20, seed=1)
    bank = FeatureBank(paths["features_dir"], "global", 192)
    csvs = {name: str(paths[name]) for name in ("train", "tune")}
    splits, scaling = regression_splits(csvs, bank, "target")
    train = pd.read_csv(paths["train"]).target.to_numpy()
    assert scaling == Scaling(pytest.approx(train.mean()), pytest.approx(train.std()))
    tune = pd.read_csv(paths["tune"]).target.to_numpy()
    np.testing.assert_allclose(splits["tune"].dataset.targets["value"], (tune - train.mean()) / train.std(), rtol=1e-5)
    again, same = regression_splits({"tune": csvs["tune"]}, bank, "target", scaling=scaling)
    assert same == scaling
    np.testing.assert_array_equal(again["tune"].dataset.targets["value"], splits["tune"].dataset.targets["value"])


def test_regression_learns_a_real_signal_and_writes_every_output(tmp_path):
    paths = regression_data(tmp_path / "data", n_slides=60, signal=1.5, seed=2)
    cfg = job_config("regression", tmp_path, paths, nepochs=8)
    assert run_training_job(cfg, "regression", multi=False) == 0
    out = tmp_path / "out" / "regression" / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["r2"] > 0.5 and metrics["test"]["pearson"] > 0.8, metrics
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert {"slide_id", "target", "prediction"} <= set(predictions.columns) and len(predictions) == 12
    assert (out / "test_scatter.png").exists() and (out / "r2.png").exists()
