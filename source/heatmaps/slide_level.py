"""Slide-level attention: a trained slide model (``best.pt`` of train/*.py) weighing a slide's regions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from source.errors import ConfigError
from source.models.slide_registry import AGGREGATORS, aggregator_spec
from source.tasks.trained import TrainedSlideModel, load_trained_slide_model


def load_slide_model(path: str | Path, device: torch.device) -> TrainedSlideModel:
    """The trained slide model of ``slide_weights`` (the one loader), refused when it has no attention to draw.

    Raises:
        CheckpointError: not a training checkpoint, or tensors that do not fit the model its config describes.
        ConfigError: an aggregator without attention over its instances (``transmil``, ``mean``, ``max``).
    """
    trained = load_trained_slide_model(path, device, key="slide_weights")
    name = trained.settings.aggregator
    if not aggregator_spec(name).attention:
        with_attention = [spec.name for spec in AGGREGATORS.values() if spec.attention]
        raise ConfigError(
            f"slide_weights '{path}' is a '{name}' model, which has no attention over the regions: there is no "
            f"slide-level map to draw. Leave slide_weights blank (patch and region maps), or give a model trained "
            f"with one of {with_attention}"
        )
    return trained


@torch.inference_mode()
def slide_attention(
    trained: TrainedSlideModel, local: torch.Tensor, global_: torch.Tensor, tissue: Optional[torch.Tensor] = None
) -> np.ndarray:
    """Attention of the slide model over M regions (a flat patch bag's attention summed per region).

    Args:
        local: ``(M, n*n, D_patch)`` patch features (read by level-local models).
        global_: ``(M, D_region)`` region features (read by level-global models).
        tissue: ``(M, n*n)`` tissue fraction of each patch, for a level-local model trained with
            ``model.mask_background`` (its ViT_region reads them as a last channel).

    Returns:
        ``(M,)`` weights that sum to 1.
    """
    model = getattr(trained.model, "slide_model", trained.model)  # a patient-level model embeds slides first
    device = next(model.parameters()).device
    settings = trained.settings
    bag = (global_ if settings.level == "global" else local).to(device)
    if settings.tissue_channel and settings.level == "local":
        if tissue is None:
            raise ValueError("this slide model masks background patches: give the tissue fraction of every patch")
        bag = torch.cat([bag, tissue.to(device=device, dtype=bag.dtype).unsqueeze(-1)], dim=-1)
    if settings.patch_bags:
        bag = bag.reshape(-1, bag.shape[-1])
    attention = model.forward_with_attention(bag)[1].float()
    return attention.reshape(len(local), -1).sum(1).cpu().numpy()
