"""Run a slide-level model over a split: prediction table and mean loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from source.data.features import Split
from source.tasks.base import Task


def to_device(features: torch.Tensor | list[torch.Tensor], device: torch.device) -> torch.Tensor | list[torch.Tensor]:
    """Move a bag (a tensor or a list of tensors) to ``device``."""
    if isinstance(features, list):
        return [f.to(device) for f in features]
    return features.to(device)


@torch.inference_mode()
def predict_split(model: nn.Module, task: Task, split: Split, device: torch.device) -> tuple[pd.DataFrame, float]:
    """Predictions of every item (``split.frame`` + the task's prediction columns) and the mean loss (eval mode)."""
    model.eval()
    rows, losses = [], []
    for index in range(len(split.dataset)):
        bag = split.dataset[index]
        logits = model(to_device(bag.features, device)).float().cpu()
        losses.append(float(task.loss(logits, bag.targets, training=False)))
        rows.append(task.predict(logits))
    predictions = pd.concat([split.frame.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    return predictions, float(np.mean(losses)) if losses else float("nan")
