"""Read the encoder keys of any entry point's config into one :class:`~source.models.settings.EncoderSettings`.

Each entry point names the same settings its own way (extraction ``pretrain_vit_patch``, heatmaps
``patch_weights``, training ``model.pretrain_vit_region``, DINO ``model.pretrained_weights``); a key map
per schema says where each setting lives, and :func:`encoder_settings` reads it. A setting a schema lacks
keeps its default. Adding an entry point that builds encoders = one key map here.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from source.models.settings import EncoderSettings

EncoderKeys = Mapping[str, str]
"""``EncoderSettings`` field -> dotted config key."""

_PIXELS = {
    "patch_arch": "vit_patch_arch",
    "patch_kwargs": "vit_patch_kwargs",
    "checkpoint_key": "checkpoint_key",
    "img_size_pretrained": "img_size_pretrained",
    "patch_size": "patch_size",
    "patch_batch_size": "patch_batch_size",
    "mean": "mean",
    "std": "std",
    "precision": "precision",
}

EXTRACTION_KEYS: EncoderKeys = _PIXELS | {
    "level": "level",
    "region_arch": "vit_region_arch",
    "patch_weights": "pretrain_vit_patch",
    "region_weights": "pretrain_vit_region",
    "mini_patch_size": "mini_patch_size",
}
"""``extract_features.py`` (:class:`source.config.extraction.ExtractionConfig`)."""

HEATMAP_KEYS: EncoderKeys = _PIXELS | {
    "region_arch": "vit_region_arch",
    "patch_weights": "patch_weights",
    "region_weights": "region_weights",
}
"""``attention_visualization.py`` (:class:`source.config.heatmaps.HeatmapConfig`); the level is the job's choice."""

TRAINING_KEYS: EncoderKeys = {
    "level": "level",
    "region_arch": "model.vit_region_arch",
    "region_weights": "model.pretrain_vit_region",
    "checkpoint_key": "model.checkpoint_key",
    "img_size_pretrained": "model.img_size_pretrained",
}
"""``train/*.py`` at level local: the ViT_region inside LocalGlobalHIPT."""

_DINO = {"checkpoint_key": "model.checkpoint_key", "drop_path_rate": "model.drop_path_rate"}
DINO_KEYS: Mapping[str, EncoderKeys] = {
    "patch": _DINO | {"patch_arch": "model.arch", "patch_weights": "model.pretrained_weights"},
    "region": _DINO | {"region_arch": "model.arch", "region_weights": "model.pretrained_weights"},
}
"""``pretrain/dino_<stage>.py``: the student of each stage."""

KNN_KEYS: Mapping[str, EncoderKeys] = {
    "patch": {"patch_arch": "arch", "patch_weights": "checkpoint", "checkpoint_key": "checkpoint_key"},
    "region": {"region_arch": "arch", "region_weights": "checkpoint", "checkpoint_key": "checkpoint_key"},
}
"""``pretrain/eval_knn.py``: the backbone of its ``stage``."""

_KEY_FIELDS = {"patch_weights": "patch_weights_key", "region_weights": "region_weights_key"}


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return tuple(value) if isinstance(value, list) else value


def encoder_settings(cfg: DictConfig, keys: EncoderKeys, **values: Any) -> EncoderSettings:
    """The encoder settings of ``cfg`` read through ``keys``; ``values`` set fields directly (e.g. ``level``).

    The config keys of the weights are recorded, so that messages about them name the user's key.
    """
    fields: dict[str, Any] = {}
    for name, key in keys.items():
        fields[name] = _plain(OmegaConf.select(cfg, key))
        if name in _KEY_FIELDS:
            fields[_KEY_FIELDS[name]] = key
    if fields.get("patch_kwargs") is not None:
        fields["patch_kwargs"] = dict(fields["patch_kwargs"])
    return EncoderSettings(**(fields | values))
