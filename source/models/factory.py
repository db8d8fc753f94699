"""Build HIPT encoders by name and fill them with pretrained weights (or, when asked, random ones)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from source.models.checkpoints import load_pretrained
from source.models.hipt import HIPTEncoder
from source.models.vit import PRETRAINED_POS_GRID, VisionTransformer, build_vit

logger = logging.getLogger(__name__)

TOKEN_SIZE = 16
"""Pixels per ViT_patch token; ViT_region's ``img_size_pretrained`` is counted in the same unit."""


def load_or_warn(model: VisionTransformer, weights: Optional[str | Path], entry: str, name: str, key: str) -> None:
    """Load ``weights`` into ``model``; with ``weights=None`` keep the random init and warn once."""
    if weights is None:
        logger.warning(
            "%s has RANDOM weights (%s is null): its features carry no pretrained knowledge. Set %s to a "
            "checkpoint for real use.",
            name,
            key,
            key,
        )
        return
    load_pretrained(model, weights, entry=entry, name=name)


def build_vit_patch(
    arch: str = "vit_small", weights: Optional[str | Path] = None, entry: str = "teacher"
) -> VisionTransformer:
    """ViT_patch (ViT-S/16 by default), loaded from ``weights`` (config key ``pretrain_vit_patch``)."""
    model = build_vit(arch)
    load_or_warn(model, weights, entry, "vit_patch", "pretrain_vit_patch")
    return model


def build_vit_region(
    arch: str = "vit4k_xs",
    weights: Optional[str | Path] = None,
    entry: str = "teacher",
    img_size_pretrained: Optional[int] = None,
    input_dim: int = 384,
) -> VisionTransformer:
    """ViT_region (ViT4K-XS by default), loaded from ``weights`` (config key ``pretrain_vit_region``).

    Args:
        img_size_pretrained: size the checkpoint's pos-embed was learned for, in ViT4K's 16-unit
            convention (224 = the official 14 x 14 grid); None means 224.
    """
    pos_grid = (img_size_pretrained // TOKEN_SIZE) if img_size_pretrained else PRETRAINED_POS_GRID
    model = build_vit(arch, pos_grid=pos_grid, input_dim=input_dim)
    load_or_warn(model, weights, entry, "vit_region", "pretrain_vit_region")
    return model


def build_hipt_encoder(
    level: str,
    pretrain_vit_patch: Optional[str | Path],
    pretrain_vit_region: Optional[str | Path] = None,
    patch_arch: str = "vit_small",
    region_arch: str = "vit4k_xs",
    checkpoint_key: str = "teacher",
    img_size_pretrained: Optional[int] = None,
    patch_size: int = 256,
    patch_batch_size: int = 256,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    precision: str = "fp32",
) -> HIPTEncoder:
    """The region encoder for ``level`` ``global`` (ViT_patch + ViT_region) or ``local`` (ViT_patch only)."""
    vit_patch = build_vit_patch(patch_arch, pretrain_vit_patch, checkpoint_key).eval()
    vit_region = None
    if level == "global":
        vit_region = build_vit_region(
            region_arch, pretrain_vit_region, checkpoint_key, img_size_pretrained, input_dim=vit_patch.embed_dim
        ).eval()
    return HIPTEncoder(vit_patch, vit_region, patch_size, patch_batch_size, mean, std, precision)
