"""The interface a task gives the generic trainer, the inference job and the heatmaps.

Everything that differs between slide-level tasks lives in the task's class: its number of outputs,
the label columns a csv needs, its splits and the state a checkpoint keeps (e.g. survival's bins), the
loss, predictions, metrics, plots, and how an ensemble averages predictions. Engines never branch on
the task kind: they look the class up in :mod:`source.tasks.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import pandas as pd
import torch

from source.config.core import CONFIG_KEY
from source.config.training import ModelConfig


@dataclass(frozen=True)
class LabelSettings:
    """What every task reads from its training config (built once, at the edge, by
    :func:`source.config.core.settings_from_config`): the label column and how the training split is drawn."""

    label_name: str = "label"
    seed: int = 0
    pct: Optional[float] = field(default=None, metadata={CONFIG_KEY: "training.pct"})
    allow_overlap: bool = field(default=False, metadata={CONFIG_KEY: "data.allow_overlap"})
    train_fraction: Optional[float] = field(default=None, metadata={CONFIG_KEY: "data.train_fraction"})


class Task(ABC):
    """Loss, predictions, metrics and plots of one kind of slide-level target.

    Attributes:
        num_outputs: logits per item.
        default_tracking: the tune metric early stopping watches by default.
        metric_names: the metrics :meth:`metrics` returns (besides ``loss``), i.e. what can be tracked.
        higher_is_better: for each metric name, whether larger is better (``loss`` is lower-is-better).
    """

    kind: str = ""
    keys: ClassVar[type]
    """The task's own root keys of a training config (a dataclass: name, type, default), besides those of
    :class:`~source.config.training.TrainingConfig`; the schema holds both (see ``registry.training_schema``)."""
    model_keys: ClassVar[type] = ModelConfig
    """The ``model`` block of the task's training config (a task may add keys of its own)."""
    settings: ClassVar[type] = LabelSettings
    """What the task reads from a training config (a :class:`LabelSettings` subclass)."""
    resume_keys: ClassVar[tuple[str, ...]] = ()
    """The task's keys that must not change when a training run is resumed."""
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

    def explanation_target(self, logits: torch.Tensor, requested: Optional[int]) -> Optional[int]:
        """The ``target_class`` an explanation of a bag attributes, from its logits ``(C,)`` and the one asked for
        (None: the task's choice). Tasks without classes keep what was asked (it is unused)."""
        return requested

    @abstractmethod
    def metrics(self, predictions: pd.DataFrame) -> dict[str, float]:
        """Metrics of a split from its prediction table (item columns + prediction columns)."""

    @abstractmethod
    def plots(self, predictions: pd.DataFrame, out_dir: Path, split: str) -> list[Path]:
        """Write the task's PNG plots of a split; return their paths."""

    # -- what the engines ask of a task kind, from its settings ---------------------------------------
    @classmethod
    def config_problems(cls, settings: LabelSettings) -> list[str]:
        """What is wrong with the task's keys (each a message naming the key and how to fix it)."""
        return []

    @classmethod
    @abstractmethod
    def outputs_of(cls, settings: LabelSettings) -> int:
        """Logits per item (e.g. ``num_classes``, ``nbins``)."""

    @classmethod
    @abstractmethod
    def label_columns(cls, settings: LabelSettings) -> set[str]:
        """The columns a csv needs to be scored (without them it is predicted only)."""

    @classmethod
    @abstractmethod
    def target_names(cls) -> list[str]:
        """The target keys of a bag (placeholders for csvs without labels)."""

    @classmethod
    def by_patient(cls, settings: LabelSettings) -> bool:
        """Whether items are patients (bags of slides) rather than slides."""
        return False

    @classmethod
    @abstractmethod
    def build(
        cls, settings: LabelSettings, paths: Mapping[str, str], bank: Any, state: Optional[dict] = None
    ) -> tuple["Task", dict[str, Any], dict]:
        """The task, its splits (``Split`` per csv of ``paths``) and the task state checkpoints keep.

        ``state`` is that of a trained model (inference, heatmaps): the task is rebuilt as trained
        (class names, survival bins) instead of from the training split.
        """

    @classmethod
    @abstractmethod
    def from_state(cls, settings: LabelSettings, state: dict) -> "Task":
        """The task of a trained model, from its settings and saved task state (no data needed)."""

    @abstractmethod
    def ensemble(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Average the prediction tables of several models of the same items (columns as :meth:`predict`)."""
