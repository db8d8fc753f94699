"""Build HIPT encoders from :class:`~source.models.settings.EncoderSettings` and fill them with pretrained weights
(or, when asked, random ones)."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path
from typing import Optional

import numpy as np
from torch import nn

from source.models.checkpoints import LoadReport, load_pretrained
from source.models.hipt import HIPTEncoder
from source.models.registry import EncoderKind, build_encoder
from source.models.settings import TOKEN_SIZE, EncoderSettings, SlideModelSettings
from source.models.slide_model import SlideModel
from source.models.slide_registry import aggregator_spec
from source.models.vit import PRETRAINED_POS_GRID, VisionTransformer

logger = logging.getLogger(__name__)


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


def _depth_kwargs(settings: EncoderSettings) -> dict:
    return {"drop_path_rate": settings.drop_path_rate} if settings.drop_path_rate else {}


def build_vit_patch(settings: EncoderSettings) -> nn.Module:
    """ViT_patch (``settings.patch_arch``: ViT-S/16 by default, any registered pixel encoder or ``timm:<model>``),
    loaded from ``settings.patch_weights``; maps ``(B, 3, H, W)`` pixels to ``(B, D_patch)``."""
    return _vit_patch_with_report(settings)[0]


def _vit_patch_with_report(settings: EncoderSettings) -> tuple[nn.Module, Optional[LoadReport]]:
    model = build_encoder(
        settings.patch_arch,
        EncoderKind.pixels,
        patch_size=settings.mini_patch_size,
        **_depth_kwargs(settings),
        **dict(settings.patch_kwargs or {}),
    )
    target = getattr(model, "model", model)  # a timm encoder's weights are those of its timm model
    report = load_or_warn(
        target,
        settings.patch_weights,
        settings.checkpoint_key,
        "vit_patch",
        settings.patch_weights_key,
        settings.warn_random,
        settings.adopt_pos_grid,
    )
    return model, report


def build_vit_region(settings: EncoderSettings, input_dim: int = 384) -> VisionTransformer:
    """ViT_region (``settings.region_arch``: ViT4K-XS by default) over ``input_dim``-wide patch features, loaded
    from ``settings.region_weights``; maps a grid ``(B, input_dim, n, n)`` to ``(B, D_region)``.

    ``settings.img_size_pretrained`` is the pos-embed size to build, in ViT4K's 16-unit convention (224 = the
    official 14 x 14 grid); a checkpoint of another grid is resized to it. None: take the checkpoint's grid.
    """
    size = settings.img_size_pretrained
    pos_grid = (size // TOKEN_SIZE) if size else PRETRAINED_POS_GRID
    model = build_encoder(
        settings.region_arch, EncoderKind.grid, pos_grid=pos_grid, input_dim=input_dim, **_depth_kwargs(settings)
    )
    load_or_warn(
        model,
        settings.region_weights,
        settings.checkpoint_key,
        "vit_region",
        settings.region_weights_key,
        settings.warn_random,
        adopt_pos_grid=settings.adopt_pos_grid and size is None,
    )
    return model


def build_hipt_encoder(settings: EncoderSettings) -> HIPTEncoder:
    """The region encoder of ``settings``: uint8 regions ``(B, 3, R, R)`` -> local ``(B, n*n, D_patch)`` and, at
    level ``global`` (ViT_patch + ViT_region), ``(B, D_region)``; level ``local`` builds ViT_patch only.

    A DINO snapshot of this project records the normalisation it was trained with; a different ``mean`` /
    ``std`` here is warned about (the encoder would see pixels unlike those it learned from).
    """
    vit_patch, report = _vit_patch_with_report(settings)
    mean, std = tuple(settings.mean), tuple(settings.std)
    transform = getattr(vit_patch, "transform", None)
    if transform is not None:  # a timm / foundation-model encoder brings its own normalisation
        if (mean, std) != (transform.mean, transform.std):
            logger.info(
                "vit_patch %s normalises with its own mean %s / std %s (input %d px, %s): mean and std are not used",
                settings.patch_arch,
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
    vit_region = build_vit_region(settings, vit_patch.embed_dim).eval() if settings.has_region_encoder else None
    return HIPTEncoder(
        vit_patch, vit_region, settings.patch_size, settings.patch_batch_size, mean, std, settings.precision
    )


def build_stage_encoder(settings: EncoderSettings, stage: str, input_dim: Optional[int] = None) -> nn.Module:
    """The one encoder a DINO stage trains: ViT_patch (``patch``) or ViT_region (``region``, over ``input_dim``-wide
    grids; None = the architecture's default width, 384)."""
    if stage == "patch":
        return build_vit_patch(settings)
    return build_vit_region(settings, **({"input_dim": input_dim} if input_dim else {}))


def build_slide_model(settings: SlideModelSettings, num_outputs: int) -> SlideModel:
    """The slide model of ``settings.aggregator`` with ``num_outputs`` logits.

    ``hipt``: GlobalHIPT (level global) or LocalGlobalHIPT (level local, ViT_region built from the options'
    ``vit_region``), wrapped in PatientHIPT when ``patient_pooling``. Any other registered aggregator reads bags of
    ``settings.instance_dim``-wide instances (regions, or flat patch bags at level local); its options (if any) are
    the builder's keywords.
    """
    from source.models.slide import GlobalHIPT, LocalGlobalHIPT, PatientHIPT

    spec = aggregator_spec(settings.aggregator)
    hipt = settings.hipt
    if hipt is None:
        module_name, function = spec.builder.split(":")
        builder = getattr(importlib.import_module(module_name), function)
        options = dataclasses.asdict(settings.options) if settings.options is not None else {}
        return builder(
            settings.instance_dim,
            num_outputs,
            hidden=settings.hidden_dim,
            dropout=settings.dropout,
            **dict(spec.fixed),
            **options,
        )
    positions = (hipt.pos_embed, hipt.max_len)
    if settings.level == "global":
        model = GlobalHIPT(num_outputs, settings.region_dim, settings.dropout, *positions)
    else:
        vit_region = build_vit_region(hipt.vit_region, settings.patch_dim)
        if hipt.mask_background:
            vit_region.tissue_threshold = hipt.tissue_threshold
        model = LocalGlobalHIPT(
            vit_region,
            num_outputs,
            settings.dropout,
            *positions,
            hipt.freeze_vit_region,
            hipt.freeze_pos_embed,
        )
    return PatientHIPT(model, num_outputs, settings.dropout) if hipt.patient_pooling else model
