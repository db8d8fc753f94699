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


def test_class_names_come_from_label_mapping_and_name_columns_and_plots(tmp_path):
    from source.tasks.classification import class_names_of

    assert class_names_of(2, {"LUAD": 0, "LUSC": 1}) == ["LUAD", "LUSC"]
    assert class_names_of(3, {"ccRCC": 0, "pRCC": 1, "chRCC": 2, "KICH": 2}) == ["ccRCC", "pRCC", "chRCC/KICH"]
    assert class_names_of(2) == ["0", "1"]
    task = ClassificationTask(2, ["LUAD", "LUSC"])
    columns = task.predict(torch.tensor([0.2, 1.5]))
    assert set(columns) == {"prob_LUAD", "prob_LUSC", "pred", "pred_label"} and columns["pred_label"] == "LUSC"
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 40)
    p1 = np.clip(truth * 0.4 + rng.uniform(size=40) * 0.6, 0, 1)
    frame = pd.DataFrame({"label_index": truth, "prob_LUAD": 1 - p1, "prob_LUSC": p1, "pred": (p1 > 0.5).astype(int)})
    assert task.metrics(frame)["auc"] == pytest.approx(roc_auc_score(truth, p1))
    task.plots(frame, tmp_path, "test")
    matrix = pd.read_csv(tmp_path / "test_confusion_matrix.csv", index_col=0)
    assert list(matrix.columns) == ["LUAD", "LUSC"] and list(matrix.index) == ["true_LUAD", "true_LUSC"]
    assert (tmp_path / "test_roc.png").exists()


def test_roc_legend_names_each_class_with_its_auc(tmp_path, monkeypatch):
    import source.tasks.classification as module

    figures = []
    monkeypatch.setattr(module, "save_figure", lambda figure, path: figures.append(figure) or path)
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3))
    logits[np.arange(60), truth] += 1.5
    probabilities = torch.softmax(torch.tensor(logits), 1).numpy()
    frame = pd.DataFrame(
        {"label_index": truth, **{f"prob_{n}": probabilities[:, i] for i, n in enumerate(["a", "b", "c"])}}
    )
    frame["pred"] = probabilities.argmax(1)
    ClassificationTask(3, ["a", "b", "c"]).plots(frame, tmp_path, "test")
    legend = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    expected = [
        f"{name} vs rest (AUC {roc_auc_score(truth == i, probabilities[:, i]):.3f})" for i, name in enumerate("abc")
    ]
    assert legend == expected
    assert [t.get_text() for t in figures[1].axes[0].get_xticklabels()] == ["a", "b", "c"]
