"""Run a slide-level model over splits: prediction tables, mean losses, and the files that report them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from source.data.features import EncodedBank, Split
from source.io import atomic_write_csv, atomic_write_json
from source.models.slide import LocalGlobalHIPT
from source.tasks.base import Task

logger = logging.getLogger(__name__)


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


def encode_once(model: torch.nn.Module, splits: dict[str, Split], device: torch.device) -> None:
    """With a frozen ViT_region (level local), encode each slide's patch features once, not every epoch."""
    slide_model = getattr(model, "slide_model", model)
    if not (isinstance(slide_model, LocalGlobalHIPT) and slide_model.freeze_vit_region):
        return
    slide_model.vit_region.eval()
    for split in splits.values():
        split.dataset.bank = EncodedBank(split.dataset.bank, slide_model.region_features, device)


def write_results(
    task: Task, results: dict[str, tuple[pd.DataFrame, float]], out_dir: Path, unlabelled: Sequence[str] = ()
) -> dict[str, dict[str, float]]:
    """``<split>_predictions.csv``, and for labelled splits the task's plots and ``metrics.json``; returns the
    metrics."""
    metrics = {}
    for split, (predictions, loss) in results.items():
        atomic_write_csv(predictions, out_dir / f"{split}_predictions.csv")
        if split in unlabelled:
            continue
        metrics[split] = {"loss": loss, **task.metrics(predictions)}
        task.plots(predictions, out_dir, split)
    undefined = atomic_write_json(out_dir / "metrics.json", metrics)
    if undefined:
        logger.info(
            "%s: %s written as null (not a finite number: e.g. an ensemble of checkpoints has no single loss, a "
            "split with one class has no AUC)",
            out_dir / "metrics.json",
            ", ".join(undefined),
        )
    return metrics
