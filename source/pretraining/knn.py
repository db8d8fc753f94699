"""Weighted k-nearest-neighbour classification of embeddings (DINO's monitor)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score


def knn_probabilities(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Class probabilities of each test embedding from its ``k`` most similar training embeddings.

    Cosine similarity on L2-normalised features; each neighbour votes for its class with weight
    ``exp(similarity / temperature)``; votes are normalised to sum to one.

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)``; test_features: ``(M, D)``.

    Returns:
        ``(M, num_classes)``.
    """
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    similarity, neighbours = (test @ train.T).topk(min(k, len(train)), dim=1)
    weights = (similarity / temperature).exp()
    votes = torch.zeros(len(test), num_classes).scatter_add_(1, train_labels[neighbours], weights)
    return votes / votes.sum(dim=1, keepdim=True)


def knn_metrics(probabilities: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    """accuracy, balanced_accuracy and auc (binary, or one-vs-rest macro) of kNN probabilities."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = {
            "accuracy": float(accuracy_score(labels, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        }
        if len(np.unique(labels)) < 2:
            metrics["auc"] = float("nan")
        elif probabilities.shape[1] == 2:
            metrics["auc"] = float(roc_auc_score(labels, probabilities[:, 1]))
        else:
            metrics["auc"] = float(
                roc_auc_score(labels, probabilities, multi_class="ovr", labels=list(range(probabilities.shape[1])))
            )
    return metrics
