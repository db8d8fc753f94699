"""The interface a task gives the generic trainer, the inference job and the heatmaps.

Everything that differs between slide-level tasks lives in the task's class: its number of outputs,
the label columns a csv needs, its splits and the state a checkpoint keeps (e.g. survival's bins), the
loss, predictions, metrics, plots, and how an ensemble averages predictions. Engines never branch on
the task kind: they look the class up in :mod:`source.tasks.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping, Optional

import pandas as pd
import torch
from omegaconf import DictConfig


class Task(ABC):
    """Loss, predictions, metrics and plots of one kind of slide-level target.

    Attributes:
        num_outputs: logits per item.
        default_tracking: the tune metric early stopping watches by default.
        metric_names: the metrics :meth:`metrics` returns (besides ``loss``), i.e. what can be tracked.
        higher_is_better: for each metric name, whether larger is better (``loss`` is lower-is-better).
    """

    kind: str = ""
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
    def explained(self, logits: torch.Tensor, target_class: Optional[int] = None) -> torch.Tensor:
        """The scalar an explanation attributes, per bag: logits ``(B, C)`` -> ``(B,)`` (a class probability, the
        risk, the prediction); ``target_class`` picks the class where there are classes."""

    explained_name: str = "output"
    """What :meth:`explained` is, for tables and plots."""

    @abstractmethod
    def metrics(self, predictions: pd.DataFrame) -> dict[str, float]:
        """Metrics of a split from its prediction table (item columns + prediction columns)."""

    @abstractmethod
    def plots(self, predictions: pd.DataFrame, out_dir: Path, split: str) -> list[Path]:
        """Write the task's PNG plots of a split; return their paths."""

    # -- what the engines ask of a task kind, from a training config ----------------------------------
    @classmethod
    @abstractmethod
    def outputs_of(cls, cfg: DictConfig) -> int:
        """Logits per item for a training config (e.g. ``num_classes``, ``nbins``)."""

    @classmethod
    @abstractmethod
    def label_columns(cls, cfg: DictConfig) -> set[str]:
        """The columns a csv needs to be scored (without them it is predicted only)."""

    @classmethod
    @abstractmethod
    def target_names(cls) -> list[str]:
        """The target keys of a bag (placeholders for csvs without labels)."""

    @classmethod
    def by_patient(cls, cfg: DictConfig) -> bool:
        """Whether items are patients (bags of slides) rather than slides."""
        return False

    @classmethod
    @abstractmethod
    def from_config(
        cls, cfg: DictConfig, paths: Mapping[str, str], bank: Any, state: Optional[dict] = None
    ) -> tuple["Task", dict[str, Any], dict]:
        """The task, its splits (``Split`` per csv of ``paths``) and the task state checkpoints keep.

        ``state`` is that of a trained model (inference, heatmaps): the task is rebuilt as trained
        (class names, survival bins) instead of from the training split.
        """

    @classmethod
    @abstractmethod
    def from_state(cls, cfg: DictConfig, state: dict) -> "Task":
        """The task of a trained model, from its training config and saved task state (no data needed)."""

    @abstractmethod
    def ensemble(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Average the prediction tables of several models of the same items (columns as :meth:`predict`)."""
