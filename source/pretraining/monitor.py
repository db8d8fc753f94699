"""kNN monitoring: embed a labelled downstream set with a backbone (sharded over ranks) and score a kNN classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from source.distributed import DistributedContext, gather_objects
from source.io import atomic_torch_save
from source.pretraining.knn import knn_metrics, knn_probabilities


@torch.inference_mode()
def embed(
    backbone: nn.Module,
    files: Sequence[Path],
    load: Callable,
    batch_size: int,
    device: torch.device,
    context: DistributedContext,
) -> torch.Tensor:
    """CLS embeddings ``(N, D)`` of every file; rank r embeds files r, r + world, ... and all ranks get the whole."""
    was_training = backbone.training
    backbone.eval()
    mine = list(range(context.rank, len(files), context.world_size))
    rows: list[tuple[int, torch.Tensor]] = []
    for start in range(0, len(mine), batch_size):
        indices = mine[start : start + batch_size]
        batch = torch.stack([load(files[i]) for i in indices]).to(device)
        rows += list(zip(indices, backbone(batch).float().cpu(), strict=True))
    backbone.train(was_training)
    ordered = sorted((row for part in gather_objects(rows, context) for row in part), key=lambda row: row[0])
    return torch.stack([feature for _, feature in ordered])


class KnnMonitor:
    """Scores backbones with a weighted kNN on a labelled train / test set.

    Args:
        train, test: ``(files, class indices)``.
        num_classes: classes of the downstream labels.
        load: file -> model input (a normalised image tensor or a feature grid).
        k, temperature: kNN settings.
        batch_size: embedding batch size.
        save_dir: when set, the embeddings are written there as ``<name>_{train,test}_features.pt``.
    """

    def __init__(
        self,
        train: tuple[Sequence[Path], np.ndarray],
        test: tuple[Sequence[Path], np.ndarray],
        num_classes: int,
        load: Callable,
        k: int = 20,
        temperature: float = 0.07,
        batch_size: int = 64,
        save_dir: Optional[Path] = None,
    ) -> None:
        self.train, self.test, self.num_classes, self.load = train, test, num_classes, load
        self.k, self.temperature, self.batch_size, self.save_dir = k, temperature, batch_size, save_dir

    def evaluate(
        self, backbone: nn.Module, name: str, device: torch.device, context: DistributedContext
    ) -> dict[str, float]:
        """accuracy, balanced_accuracy and auc of ``backbone``'s embeddings (the same on every rank)."""
        train_features = embed(backbone, self.train[0], self.load, self.batch_size, device, context)
        test_features = embed(backbone, self.test[0], self.load, self.batch_size, device, context)
        if self.save_dir is not None and context.is_main:
            atomic_torch_save(
                {"features": train_features, "labels": torch.tensor(np.array(self.train[1]))},
                self.save_dir / f"{name}_train_features.pt",
            )
            atomic_torch_save(
                {"features": test_features, "labels": torch.tensor(np.array(self.test[1]))},
                self.save_dir / f"{name}_test_features.pt",
            )
        probabilities = knn_probabilities(
            train_features,
            torch.tensor(np.array(self.train[1])).long(),
            test_features,
            self.num_classes,
            self.k,
            self.temperature,
        )
        return knn_metrics(probabilities, self.test[1])
