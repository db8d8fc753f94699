"""Build HIPT encoders by name and fill them with pretrained weights (or, when asked, random ones)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from torch import nn

from source.models.checkpoints import LoadReport, load_pretrained
from source.models.hipt import HIPTEncoder
from source.models.registry import DEFAULT_PATCH_ENCODER, DEFAULT_REGION_ENCODER, EncoderKind, build_encoder
from source.models.vit import PRETRAINED_POS_GRID, VisionTransformer

logger = logging.getLogger(__name__)

TOKEN_SIZE = 16
"""Pixels per ViT_patch token; ViT_region's ``img_size_pretrained`` is counted in the same unit."""


def load_or_warn(
    model: VisionTransformer,
    weights: Optional[str | Path],
    entry: str,
    name: str,
    key: str,
    warn: bool = True,
    adopt_pos_grid: bool = True,
) -> Optional[LoadReport]:
    """Load ``weights`` into ``model``; with ``weights=None`` keep the random init and warn once (if ``warn``)."""
    if weights is None and not warn:
        return None
    if weights is None:
        logger.warning(
            "%s has RANDOM weights (%s is null): its features carry no pretrained knowledge. Set %s to a checkpoint "
            "for real use.",
            name,
            key,
            key,
        )
        return None
    return load_pretrained(model, weights, entry=entry, name=name, adopt_pos_grid=adopt_pos_grid, key=key)


PATCH_KEY = "pretrain_vit_patch"
REGION_KEY = "pretrain_vit_region"
"""Extraction's config keys of the weights; other entry points pass their own names to be named in messages."""


def build_vit_patch(
    arch: str = DEFAULT_PATCH_ENCODER,
    weights: Optional[str | Path] = None,
    entry: str = "teacher",
    token_size: int = TOKEN_SIZE,
    key: str = PATCH_KEY,
    arch_kwargs: Optional[dict] = None,
):
    """ViT_patch (ViT-S/16 by default, any registered pixel encoder or ``timm:<model>``), loaded from ``weights``
    (given by config key ``key``); ``arch_kwargs`` go to the architecture's builder (timm: ``create_model``)."""
    return _vit_patch_with_report(arch, weights, entry, token_size, key, arch_kwargs)[0]


def _vit_patch_with_report(
    arch: str,
    weights: Optional[str | Path],
    entry: str,
    token_size: int,
    key: str = PATCH_KEY,
    arch_kwargs: Optional[dict] = None,
) -> tuple[nn.Module, Optional[LoadReport]]:
    model = build_encoder(arch, EncoderKind.pixels, patch_size=token_size, **(arch_kwargs or {}))
    target = getattr(model, "model", model)  # a timm encoder's weights are those of its timm model
    return model, load_or_warn(target, weights, entry, "vit_patch", key)


def build_vit_region(
    arch: str = DEFAULT_REGION_ENCODER,
    weights: Optional[str | Path] = None,
    entry: str = "teacher",
    img_size_pretrained: Optional[int] = None,
    input_dim: int = 384,
    warn_random: bool = True,
    key: str = REGION_KEY,
) -> VisionTransformer:
    """ViT_region (ViT4K-XS by default), loaded from ``weights`` (given by config key ``key``).

    Args:
        img_size_pretrained: pos-embed size to build, in ViT4K's 16-unit convention (224 = the official
            14 x 14 grid); a checkpoint of another grid is resized to it. None: take the checkpoint's grid.
    """
    pos_grid = (img_size_pretrained // TOKEN_SIZE) if img_size_pretrained else PRETRAINED_POS_GRID
    model = build_encoder(arch, EncoderKind.grid, pos_grid=pos_grid, input_dim=input_dim)
    load_or_warn(model, weights, entry, "vit_region", key, warn_random, adopt_pos_grid=img_size_pretrained is None)
    return model


def build_hipt_encoder(
    level: str,
    pretrain_vit_patch: Optional[str | Path],
    pretrain_vit_region: Optional[str | Path] = None,
    patch_arch: str = DEFAULT_PATCH_ENCODER,
    region_arch: str = DEFAULT_REGION_ENCODER,
    checkpoint_key: str = "teacher",
    img_size_pretrained: Optional[int] = None,
    patch_size: int = 256,
    patch_batch_size: int = 256,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    precision: str = "fp32",
    mini_patch_size: int = TOKEN_SIZE,
    keys: tuple[str, str] = (PATCH_KEY, REGION_KEY),
    patch_kwargs: Optional[dict] = None,
) -> HIPTEncoder:
    """The region encoder for ``level`` ``global`` (ViT_patch + ViT_region) or ``local`` (ViT_patch only).

    A DINO snapshot of this project records the normalisation it was trained with; a different ``mean`` /
    ``std`` here is warned about (the encoder would see pixels unlike those it learned from). ``keys``
    are the config keys of the two weights, named in warnings and errors.
    """
    vit_patch, report = _vit_patch_with_report(
        patch_arch, pretrain_vit_patch, checkpoint_key, mini_patch_size, keys[0], patch_kwargs
    )
    transform = getattr(vit_patch, "transform", None)
    if transform is not None:  # a timm / foundation-model encoder brings its own normalisation
        if (tuple(mean), tuple(std)) != (transform.mean, transform.std):
            logger.info(
                "vit_patch %s normalises with its own mean %s / std %s (input %d px, %s): mean and std are not used",
                patch_arch,
                list(transform.mean),
                list(transform.std),
                transform.input_size,
                transform.interpolation,
            )
        mean, std = transform.mean, transform.std
    vit_patch.eval()
    if report is not None and report.normalisation is not None:
        trained_mean, trained_std = report.normalisation
        if not (np.allclose(trained_mean, mean) and np.allclose(trained_std, std)):
            logger.warning(
                "vit_patch was pretrained with mean %s / std %s but this run uses mean %s / std %s: set mean and std "
                "to match",
                trained_mean,
                trained_std,
                list(mean),
                list(std),
            )
    vit_region = None
    if level == "global":
        vit_region = build_vit_region(
            region_arch,
            pretrain_vit_region,
            checkpoint_key,
            img_size_pretrained,
            input_dim=vit_patch.embed_dim,
            key=keys[1],
        ).eval()
    return HIPTEncoder(vit_patch, vit_region, patch_size, patch_batch_size, mean, std, precision)


def build_slide_model(
    level: str,
    num_outputs: int,
    dropout: float = 0.25,
    pos_embed: Optional[str] = None,
    max_len: int = 512,
    region_dim: int = 192,
    patient_pooling: bool = False,
    vit_region_weights: Optional[str | Path] = None,
    checkpoint_key: str = "teacher",
    img_size_pretrained: Optional[int] = None,
    freeze_vit_region: bool = True,
    freeze_pos_embed: bool = True,
    patch_dim: int = 384,
    load_vit_region: bool = True,
):
    """GlobalHIPT (level global) or LocalGlobalHIPT (level local, ViT_region from ``vit_region_weights``),
    wrapped in PatientHIPT when ``patient_pooling`` (survival ``agg_method: self_att``).

    ``load_vit_region=False`` skips reading ViT_region weights (a trained checkpoint will overwrite them).
    """
    from source.models.slide import GlobalHIPT, LocalGlobalHIPT, PatientHIPT

    if level == "global":
        model = GlobalHIPT(num_outputs, region_dim, dropout, pos_embed, max_len)
    else:
        weights = vit_region_weights if load_vit_region else None
        vit_region = build_vit_region(
            DEFAULT_REGION_ENCODER,
            weights,
            checkpoint_key,
            img_size_pretrained,
            patch_dim,
            warn_random=load_vit_region,
            key="model.pretrain_vit_region",
        )
        model = LocalGlobalHIPT(
            vit_region, num_outputs, dropout, pos_embed, max_len, freeze_vit_region, freeze_pos_embed
        )
    return PatientHIPT(model, num_outputs, dropout) if patient_pooling else model


def slide_model_from_config(cfg, num_outputs: int, load_vit_region: bool = True):
    """The slide model of a training config (``load_vit_region=False`` when a checkpoint provides all weights)."""
    pos = cfg.model.slide_pos_embed
    return build_slide_model(
        cfg.level.value,
        num_outputs,
        cfg.model.dropout,
        pos.type if pos.use else None,
        pos.max_len,
        cfg.model.embed_dim_region,
        patient_pooling=cfg.model.get("agg_method") == "self_att",
        vit_region_weights=cfg.model.pretrain_vit_region,
        checkpoint_key=cfg.model.checkpoint_key,
        img_size_pretrained=cfg.model.img_size_pretrained,
        freeze_vit_region=cfg.model.freeze_vit_region,
        freeze_pos_embed=cfg.model.freeze_vit_region_pos_embed,
        patch_dim=cfg.model.embed_dim_patch,
        load_vit_region=load_vit_region,
    )
