"""Read the ``model`` block of a training config into :class:`~source.models.settings.SlideModelSettings`."""

from __future__ import annotations

from omegaconf import DictConfig

from source.config.encoders import TRAINING_KEYS, encoder_settings
from source.models.settings import SlideModelSettings


def slide_model_settings(cfg: DictConfig) -> SlideModelSettings:
    """The slide model of a training config (typed by its schema: a checkpoint's older config gets the defaults)."""
    model = cfg.model
    positions = model.slide_pos_embed
    return SlideModelSettings(
        aggregator=model.aggregator,
        level=cfg.level.value,
        region_dim=model.embed_dim_region,
        patch_dim=model.embed_dim_patch,
        dropout=model.dropout,
        hidden_dim=model.hidden_dim,
        pos_embed=str(positions.type) if positions.use else None,
        max_len=positions.max_len,
        patient_pooling=model.get("agg_method") == "self_att",
        freeze_vit_region=model.freeze_vit_region,
        freeze_pos_embed=model.freeze_vit_region_pos_embed,
        k_sample=model.clam.k_sample,
        instance_loss_weight=model.clam.instance_loss_weight,
        subtyping=model.clam.subtyping,
        vit_region=encoder_settings(cfg, TRAINING_KEYS),
        mask_background=model.mask_background,
        tissue_threshold=model.tissue_threshold,
    )
