"""Slide classification: cross-entropy, class probabilities, accuracy / balanced accuracy / AUC / kappa."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    roc_auc_score,
    roc_curve,
)

from source.io import atomic_path
from source.plots import save_figure
from source.tasks.base import LabelSettings, Task
from source.tasks.classification_splits import TARGET, classification_splits

logger = logging.getLogger(__name__)


def class_names_of(num_classes: int, label_mapping: Optional[Mapping[object, int]] = None) -> list[str]:
    """The name of each class index: the ``label_mapping`` keys mapped to it (joined with ``/``), else the index."""
    names = [[] for _ in range(num_classes)]
    for raw, index in (label_mapping or {}).items():
        if 0 <= int(index) < num_classes:
            names[int(index)].append(str(raw))
    return ["/".join(found) if found else str(index) for index, found in enumerate(names)]


@dataclass
class ClassificationKeys:
    """The root keys of a classification training config (``config/training/task/classification.yaml``)."""

    label_name: str = "label"
    num_classes: int = 2
    label_mapping: Any = None


@dataclass(frozen=True)
class ClassificationSettings(LabelSettings):
    """What classification reads from its training config."""

    num_classes: int = 2
    label_mapping: Optional[dict] = None


def label_mapping_problems(label_mapping: Any, num_classes: int) -> list[str]:
    """Why ``label_mapping`` (raw label -> class index) does not fit ``num_classes`` (empty: it fits)."""
    if label_mapping is None:
        return []
    if not isinstance(label_mapping, dict) or not all(isinstance(v, int) for v in label_mapping.values()):
        return [f"label_mapping must map raw labels to class indices, e.g. {{LUAD: 0, LUSC: 1}}; got {label_mapping!r}"]
    indices = sorted(set(label_mapping.values()))
    if indices[0] < 0 or indices[-1] >= num_classes:
        return [
            f"label_mapping uses class indices {indices} but num_classes is {num_classes}: indices must be "
            f"0..{num_classes - 1}; set num_classes={max(indices[-1] + 1, 2)}"
            + (" (and make the indices start at 0)" if indices[0] < 0 else "")
        ]
    return []


class ClassificationTask(Task):
    """Binary or multiclass classification with ``num_classes`` logits.

    Args:
        num_classes: C.
        class_names: a name per class index (from ``label_mapping``); default the indices. Prediction
            columns are ``prob_<name>``, ``pred`` (index) and ``pred_label`` (name); plots use the names.
    """

    kind = "classification"
    default_tracking = "auc"
    higher_is_better = {"loss": False, "accuracy": True, "balanced_accuracy": True, "auc": True, "kappa": True}

    keys = ClassificationKeys
    settings = ClassificationSettings
    resume_keys = ("num_classes", "label_mapping")

    @classmethod
    def config_problems(cls, settings: ClassificationSettings) -> list[str]:
        """``num_classes`` of at least 2, ``label_mapping`` onto 0..num_classes-1."""
        if settings.num_classes < 2:
            return [f"num_classes must be >= 2, got {settings.num_classes}"]
        return label_mapping_problems(settings.label_mapping, settings.num_classes)

    @classmethod
    def outputs_of(cls, settings: ClassificationSettings) -> int:
        return int(settings.num_classes)

    @classmethod
    def label_columns(cls, settings: ClassificationSettings) -> set[str]:
        return {settings.label_name}

    @classmethod
    def target_names(cls) -> list[str]:
        return ["label"]

    @classmethod
    def build(cls, settings: ClassificationSettings, paths: Mapping[str, str], bank, state: Optional[dict] = None):
        """Class names from ``label_mapping`` (or the trained model's ``state``); splits with class indices."""
        mapping = settings.label_mapping or None
        splits = classification_splits(
            paths,
            bank,
            settings.label_name,
            settings.num_classes,
            mapping,
            settings.pct,
            settings.seed,
            settings.allow_overlap,
            settings.train_fraction,
        )
        names = (state or {}).get("class_names") or class_names_of(settings.num_classes, mapping)
        return cls(settings.num_classes, names), splits, {"kind": cls.kind, "class_names": names}

    @classmethod
    def from_state(cls, settings: ClassificationSettings, state: dict) -> "ClassificationTask":
        """Class names as trained."""
        return cls(settings.num_classes, state.get("class_names"))

    def ensemble(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Mean class probabilities; ``pred`` / ``pred_label`` recomputed from them."""
        result = tables[0].copy()
        columns = self.probability_columns
        for column in columns:
            result[column] = np.mean([table[column].to_numpy() for table in tables], axis=0)
        result["pred"] = result[columns].to_numpy().argmax(axis=1)
        result["pred_label"] = [self.class_names[i] for i in result["pred"]]
        return result

    def __init__(self, num_classes: int, class_names: Optional[Sequence[str]] = None) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = self.num_outputs = num_classes
        self.class_names = list(class_names) if class_names is not None else class_names_of(num_classes)
        if len(self.class_names) != num_classes or len(set(self.class_names)) != num_classes:
            raise ValueError(f"class_names must be {num_classes} distinct names, got {self.class_names}")
        self.metric_names = ("accuracy", "balanced_accuracy", "auc") + (("kappa",) if num_classes > 2 else ())

    @property
    def probability_columns(self) -> list[str]:
        """``prob_<class name>`` for each class, in index order."""
        return [f"prob_{name}" for name in self.class_names]

    def loss(self, logits: torch.Tensor, targets: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
        """Cross-entropy of one slide: logits ``(C,)``, ``targets['label']`` a class index."""
        return F.cross_entropy(logits.unsqueeze(0), targets["label"].long().reshape(1))

    def predict(self, logits: torch.Tensor) -> dict[str, float]:
        """``prob_<name>`` for every class, the argmax ``pred`` and its name ``pred_label``."""
        probabilities = torch.softmax(logits.detach().float(), dim=-1).cpu().numpy()
        columns: dict = {column: float(p) for column, p in zip(self.probability_columns, probabilities, strict=True)}
        columns["pred"] = int(np.argmax(probabilities))
        columns["pred_label"] = self.class_names[columns["pred"]]
        return columns

    explained_name = "probability"

    def explained(self, logits: torch.Tensor, target_class: Optional[int] = None) -> torch.Tensor:
        """The probability of ``target_class`` (required: the caller picks it, e.g. the predicted class)."""
        if target_class is None or not 0 <= target_class < self.num_classes:
            raise ValueError(f"target_class must be a class index 0..{self.num_classes - 1}, got {target_class}")
        return torch.softmax(logits.float(), dim=-1)[:, target_class]

    def explanation_target(self, logits: torch.Tensor, requested: Optional[int]) -> Optional[int]:
        """The class asked for, else the predicted one (the argmax of the logits ``(C,)``)."""
        return requested if requested is not None else int(logits.argmax())

    def probabilities(self, predictions: pd.DataFrame) -> np.ndarray:
        """``(N, C)`` class probabilities of a prediction table."""
        return predictions[self.probability_columns].to_numpy(dtype=float)

    def metrics(self, predictions: pd.DataFrame) -> dict[str, float]:
        """accuracy, balanced_accuracy, auc (binary, or one-vs-rest macro), kappa (quadratic, multiclass)."""
        truth = predictions[TARGET].to_numpy(dtype=int)
        predicted = predictions["pred"].to_numpy(dtype=int)
        probabilities = self.probabilities(predictions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics = {
                "accuracy": float(accuracy_score(truth, predicted)),
                "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
                "auc": self._auc(truth, probabilities),
            }
            if self.num_classes > 2:
                metrics["kappa"] = float(cohen_kappa_score(truth, predicted, weights="quadratic"))
        return metrics

    def _auc(self, truth: np.ndarray, probabilities: np.ndarray) -> float:
        present = np.unique(truth)
        if len(present) < 2:
            return float("nan")
        if self.num_classes == 2:
            return float(roc_auc_score(truth, probabilities[:, 1]))
        if len(present) < self.num_classes:
            logger.warning(
                "AUC: classes %s are absent from this split; AUC averaged over the present ones",
                sorted(set(range(self.num_classes)) - set(present)),
            )
            keep = np.isin(truth, present)
            sub = probabilities[np.ix_(keep, present)]
            sub = sub / sub.sum(axis=1, keepdims=True)
            return float(roc_auc_score(truth[keep], sub, multi_class="ovr", average="macro", labels=present))
        return float(roc_auc_score(truth, probabilities, multi_class="ovr", average="macro"))

    def plots(self, predictions: pd.DataFrame, out_dir: Path, split: str) -> list[Path]:
        """ROC curves (one per class, one-vs-rest) and the confusion matrix (PNG and csv)."""
        import matplotlib.pyplot as plt

        truth = predictions[TARGET].to_numpy(dtype=int)
        probabilities = self.probabilities(predictions)
        written = []
        names = self.class_names
        figure, axis = plt.subplots(figsize=(5, 5))
        classes = [1] if self.num_classes == 2 else range(self.num_classes)
        for c in classes:
            if 0 < (truth == c).sum() < len(truth):
                fpr, tpr, _ = roc_curve(truth == c, probabilities[:, c])
                auc = roc_auc_score(truth == c, probabilities[:, c])
                label = f"{names[1]} vs {names[0]}" if self.num_classes == 2 else f"{names[c]} vs rest"
                axis.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
        axis.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{split} ROC")
        if axis.get_legend_handles_labels()[0]:  # a split with one class has no ROC curve to name
            axis.legend(loc="lower right")
        written.append(save_figure(figure, out_dir / f"{split}_roc.png"))
        matrix = confusion_matrix(truth, predictions["pred"].to_numpy(dtype=int), labels=list(range(self.num_classes)))
        table = pd.DataFrame(
            matrix, index=pd.Index([f"true_{n}" for n in names], name="true \\ predicted"), columns=names
        )
        with atomic_path(out_dir / f"{split}_confusion_matrix.csv") as temporary:
            table.to_csv(temporary)
        written.append(out_dir / f"{split}_confusion_matrix.csv")
        figure, axis = plt.subplots(figsize=(1.2 * self.num_classes + 2, 1.2 * self.num_classes + 1.5))
        image = axis.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            axis.text(
                j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black"
            )
        axis.set(
            xlabel="predicted",
            ylabel="true",
            title=f"{split} confusion matrix",
            xticks=range(self.num_classes),
            yticks=range(self.num_classes),
            xticklabels=names,
            yticklabels=names,
        )
        figure.colorbar(image, ax=axis)
        written.append(save_figure(figure, out_dir / f"{split}_confusion_matrix.png"))
        return written
