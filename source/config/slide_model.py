"""Read the ``model`` block of a training config into :class:`~source.models.settings.SlideModelSettings`."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from source.config.encoders import TRAINING_KEYS, encoder_settings
from source.models.settings import HiptOptions, SlideModelSettings
from source.models.slide_registry import HIPT_AGGREGATOR, aggregator_spec


def slide_model_settings(cfg: DictConfig) -> SlideModelSettings:
    """The slide model of a training config (typed by its schema: a checkpoint's older config gets the defaults)."""
    model = cfg.model
    return SlideModelSettings(
        aggregator=model.aggregator,
        level=cfg.level.value,
        region_dim=model.embed_dim_region,
        patch_dim=model.embed_dim_patch,
        dropout=model.dropout,
        hidden_dim=model.hidden_dim,
        options=_options(cfg),
    )


def _options(cfg: DictConfig) -> Any:
    """The aggregator's options: HIPT's from its ``model.*`` keys, another aggregator's from its ``model.<key>``
    block (the dataclass its registry entry declares), or None."""
    model = cfg.model
    if model.aggregator != HIPT_AGGREGATOR:
        spec = aggregator_spec(model.aggregator)
        if spec.options is None or spec.options_key is None:
            return None
        return spec.options(**OmegaConf.to_container(model[spec.options_key]))
    positions = model.slide_pos_embed
    return HiptOptions(
        pos_embed=str(positions.type) if positions.use else None,
        max_len=positions.max_len,
        patient_pooling=model.get("agg_method") == "self_att",
        freeze_vit_region=model.freeze_vit_region,
        freeze_pos_embed=model.freeze_vit_region_pos_embed,
        vit_region=encoder_settings(cfg, TRAINING_KEYS),
        mask_background=model.mask_background,
        tissue_threshold=model.tissue_threshold,
    )
