"""Slide-level attention: a trained slide model (``best.pt`` of train/*.py) weighing a slide's regions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from source.config.training import TRAINING_SCHEMAS
from source.models.checkpoints import CheckpointError, read_checkpoint


@dataclass
class SlideModel:
    """A trained slide aggregator and the level of features it reads (``global`` or ``local``)."""

    model: nn.Module
    level: str


def load_slide_model(path: str | Path, device: torch.device) -> SlideModel:
    """Rebuild a slide model from a training checkpoint.

    Raises:
        CheckpointError: not a training checkpoint, or tensors that do not fit the model its config describes.
    """
    from source.models.factory import slide_model_from_config
    from source.tasks.registry import TASKS

    path = Path(path)
    state = read_checkpoint(path)
    if not {"model", "config", "task"} <= set(state):
        raise CheckpointError(
            f"slide_weights '{path}' is not a checkpoint of train/*.py (best.pt / latest.pt): it lacks "
            "model/config/task"
        )
    kind = state["task"].get("kind")
    if kind not in TRAINING_SCHEMAS or kind not in TASKS:
        raise CheckpointError(f"slide_weights '{path}' has an unknown task {kind!r}")
    cfg = OmegaConf.merge(OmegaConf.structured(TRAINING_SCHEMAS[kind]), state["config"])
    model = slide_model_from_config(cfg, TASKS[kind].outputs_of(cfg), load_vit_region=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"slide_weights '{path}' does not fit the model of its own config: {first}") from error
    return SlideModel(model.to(device).eval(), cfg.level.value)


@torch.inference_mode()
def slide_attention(slide_model: SlideModel, local: torch.Tensor, global_: torch.Tensor) -> np.ndarray:
    """Attention of the slide aggregator over M regions.

    Args:
        local: ``(M, n*n, 384)`` patch features (read by level-local models).
        global_: ``(M, 192)`` region features (read by level-global models).

    Returns:
        ``(M,)`` softmax weights (they sum to 1).
    """
    model = getattr(slide_model.model, "slide_model", slide_model.model)  # a patient-level model embeds slides first
    device = next(model.parameters()).device
    bag = (global_ if slide_model.level == "global" else local).to(device)
    return model.embed(bag)[1].float().cpu().numpy()
