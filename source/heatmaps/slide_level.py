"""Slide-level attention: a trained slide model (``best.pt`` of train/*.py) weighing a slide's regions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from source.data.bags import SlideBag
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
    bag = SlideBag.of(trained.settings).from_encoder(local, global_, tissue, device)
    attention = model.forward_with_attention(bag)[1].float()
    return attention.reshape(len(local), -1).sum(1).cpu().numpy()
