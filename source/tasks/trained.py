"""The one way to load a trained slide model: a ``best.pt`` / ``latest.pt`` of ``train/*.py`` rebuilt, with its
task, for inference, heatmaps and explanations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from source.config.core import settings_from_config
from source.config.slide_model import slide_model_settings
from source.config.training import saved_training_config
from source.models.checkpoints import CheckpointError, read_checkpoint
from source.models.factory import build_slide_model
from source.models.settings import SlideModelSettings
from source.tasks.base import LabelSettings, Task
from source.tasks.registry import TASKS, training_schema


@dataclass
class TrainedSlideModel:
    """A trained slide model, in eval mode on its device, and what it was trained as.

    Attributes:
        model: one bag -> logits ``(C,)`` (``forward_with_attention`` also gives attention where it has one).
        task: the task as trained (class names, survival bins, regression scaling).
        task_settings: what the task read from its training config (label column, classes, bins, ...).
        features_dir: the feature folder it was trained on.
        settings: the slide model's settings (aggregator, level, bags).
        task_state: the task state saved in the checkpoint.
        path: the checkpoint file; epoch: its 0-based epoch.
    """

    model: nn.Module
    task: Task
    task_settings: LabelSettings
    features_dir: str
    settings: SlideModelSettings
    task_state: dict
    path: Path
    epoch: int

    @property
    def kind(self) -> str:
        """The task kind (``classification``, ``survival``, ...)."""
        return self.task.kind


EARLIER_OPTION_DEFAULTS = {"dsmil": {"dsmil": {"instance_embedding": True}}}
"""Option blocks a checkpoint's saved config lacks when it was trained before the block existed, by aggregator: the
form those checkpoints were trained in (DS-MIL was the two-stream mean before ``model.dsmil`` made its authors' form
the default)."""


def with_earlier_defaults(saved: dict) -> dict:
    """A checkpoint's saved config, with the option block of its aggregator that it predates set to the form it was
    trained in (:data:`EARLIER_OPTION_DEFAULTS`)."""
    model = saved.get("model") or {}
    missing = {
        key: block
        for key, block in EARLIER_OPTION_DEFAULTS.get(model.get("aggregator"), {}).items()
        if key not in model
    }
    return saved | {"model": model | missing} if missing else saved


def load_trained_slide_model(
    path: str | Path, device: torch.device | str = "cpu", kind: Optional[str] = None, key: str = "checkpoint"
) -> TrainedSlideModel:
    """Rebuild the model of a training checkpoint from its own saved config and load its weights strictly.

    Args:
        path: ``best.pt`` or ``latest.pt`` of ``train/*.py``.
        device: where the model goes.
        kind: the task kind the caller needs (None: any).
        key: the config key that named ``path``, for messages.

    Raises:
        CheckpointError: not a training checkpoint, a task of another kind, or weights that do not fit the model
            its config describes.
    """
    path = Path(path)
    state = read_checkpoint(path)
    if not {"model", "config", "task"} <= set(state) or not isinstance(state.get("task"), dict):
        raise CheckpointError(
            f"{key} '{path}' is not a checkpoint of train/*.py (best.pt / latest.pt): it lacks model/config/task"
        )
    found = state["task"].get("kind")
    if found not in TASKS:
        raise CheckpointError(f"{key} '{path}' has an unknown task {found!r}; known: {sorted(TASKS)}")
    if kind is not None and found != kind:
        raise CheckpointError(f"{key} '{path}' is not a {kind} model of train/*.py (its task is {found!r})")
    config = saved_training_config(training_schema(found), with_earlier_defaults(state["config"]))
    task_settings = settings_from_config(TASKS[found].settings, config)
    task = TASKS[found].from_state(task_settings, state["task"])
    settings = slide_model_settings(config)
    model = build_slide_model(settings.without_region_weights(), task.num_outputs)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{key} '{path}' does not fit the model of its own config: {first}") from error
    epoch = int(state.get("epoch", -1))
    return TrainedSlideModel(
        model.to(device).eval(), task, task_settings, config.features_dir, settings, state["task"], path, epoch
    )
