"""The interface a task gives the generic trainer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Mapping

import pandas as pd
import torch


class Task(ABC):
    """Loss, predictions, metrics and plots of one kind of slide-level target.

    Attributes:
        num_outputs: logits per item.
        default_tracking: the tune metric early stopping watches by default.
        metric_names: the metrics :meth:`metrics` returns (besides ``loss``), i.e. what can be tracked.
        higher_is_better: for each metric name, whether larger is better (``loss`` is lower-is-better).
    """

    num_outputs: int
    metric_names: tuple[str, ...] = ()
    default_tracking: str = "loss"
    higher_is_better: Mapping[str, bool] = {"loss": False}

    @abstractmethod
    def loss(self, logits: torch.Tensor, targets: Mapping[str, torch.Tensor], training: bool) -> torch.Tensor:
        """Scalar loss of one item. Args: logits ``(C,)``; targets of that item."""

    @abstractmethod
    def predict(self, logits: torch.Tensor) -> dict[str, float]:
        """Prediction columns of one item (e.g. ``prob_0``, ``pred`` or ``risk``) from its logits ``(C,)``."""

    @abstractmethod
    def metrics(self, predictions: pd.DataFrame) -> dict[str, float]:
        """Metrics of a split from its prediction table (item columns + prediction columns)."""

    @abstractmethod
    def plots(self, predictions: pd.DataFrame, out_dir: Path, split: str) -> list[Path]:
        """Write the task's PNG plots of a split; return their paths."""
