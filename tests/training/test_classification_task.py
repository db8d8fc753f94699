import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, roc_auc_score

from source.tasks.classification import ClassificationTask


def table(truth, probabilities):
    frame = pd.DataFrame({"label_index": truth})
    for c in range(probabilities.shape[1]):
        frame[f"prob_{c}"] = probabilities[:, c]
    frame["pred"] = probabilities.argmax(1)
    return frame


def test_binary_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 50)
    p1 = np.clip(truth * 0.3 + rng.uniform(size=50) * 0.7, 0, 1)
    probabilities = np.stack([1 - p1, p1], 1)
    metrics = ClassificationTask(2).metrics(table(truth, probabilities))
    assert metrics["auc"] == pytest.approx(roc_auc_score(truth, p1))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, probabilities.argmax(1)))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, probabilities.argmax(1)))
    assert "kappa" not in metrics


def test_multiclass_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 80)
    logits = rng.normal(size=(80, 4))
    logits[np.arange(80), truth] += 1.0
    probabilities = torch.softmax(torch.tensor(logits), 1).numpy()
    metrics = ClassificationTask(4).metrics(table(truth, probabilities))
    assert metrics["auc"] == pytest.approx(roc_auc_score(truth, probabilities, multi_class="ovr", average="macro"))
    assert metrics["kappa"] == pytest.approx(cohen_kappa_score(truth, probabilities.argmax(1), weights="quadratic"))


def test_predict_and_loss():
    task = ClassificationTask(3)
    logits = torch.tensor([0.1, 2.0, -1.0])
    columns = task.predict(logits)
    assert columns["pred"] == 1 and sum(columns[f"prob_{c}"] for c in range(3)) == pytest.approx(1)
    loss = task.loss(logits, {"label": torch.tensor(2)}, training=True)
    assert loss.item() == pytest.approx(-torch.log_softmax(logits, 0)[2].item())
