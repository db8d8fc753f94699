"""Schema and checks of the feature-extraction config (``extract_features.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from source.config.core import ConfigError, check_at_least
from source.config.run_block import RunBlock, check_run_block

Level = Enum("Level", {"global": "global", "local": "local"}, type=str)
"""What a slide's feature file holds: ``global`` [M, 192] (ViT_patch + ViT_region) or ``local``
[M, n*n, 384] (ViT_patch only). (Functional form because ``global`` is a Python keyword.)"""


class Precision(str, Enum):
    """Autocast precision of the encoders (features are always saved as float32); ``auto`` is resolved
    for the device at start (:func:`source.precision.resolve_precision`) and saved resolved."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class WandbConfig:
    """Optional Weights & Biases logging; off by default and never touched when off."""

    enable: bool = False
    project: str = "hipt"
    username: Optional[str] = None
    exp_name: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    dir: Optional[str] = None
    group: Optional[str] = None


TILING_BACKENDS = ("auto", "openslide", "cucim", "vips", "asap", "tifffile", "pil")
"""hs2p's slide readers (``auto`` picks the first that opens the slide; each needs its package)."""
SEGMENTATION_METHODS = ("hsv", "otsu", "threshold", "sam2")
"""hs2p's tissue segmentation methods."""


@dataclass
class TilingSettings:
    """The ``tiling`` block: how whole-slide images become regions (hs2p)."""

    spacing: float = 0.5
    tolerance: float = 0.05
    overlap: float = 0.0
    min_tissue_fraction: float = 0.1
    segmentation: str = "hsv"
    seg_downsample: int = 64
    backend: str = "openslide"
    reader: str = "auto"


@dataclass
class ExtractionConfig(RunBlock):
    """Every key of ``config/default.yaml``; see that file for what each one means."""

    region_dir: Optional[str] = None
    wsi_csv: Optional[str] = None
    coordinates_dir: Optional[str] = None
    save_region_images: bool = False
    tiling: TilingSettings = field(default_factory=TilingSettings)
    slide_list: Optional[str] = None
    experiment_name: str = "feature_extraction"
    region_size: int = 4096
    patch_size: int = 256
    mini_patch_size: int = 16
    format: str = "jpg"
    level: Level = Level["global"]
    save_region_features: bool = False
    pretrain_vit_patch: Optional[str] = "checkpoints/vit256_small_dino.pth"
    pretrain_vit_region: Optional[str] = "checkpoints/vit4k_xs_dino.pth"
    checkpoint_key: str = "teacher"
    vit_patch_arch: str = "vit_small"
    vit_patch_kwargs: Any = None
    vit_region_arch: str = "vit4k_xs"
    img_size_pretrained: Optional[int] = None
    seed: int = 0
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    precision: Precision = Precision.fp32
    batch_size: int = 1
    patch_batch_size: int = 256
    num_workers: int = 2
    compile: bool = False
    split_across_gpus: bool = False
    wandb: WandbConfig = field(default_factory=WandbConfig)


RESUME_KEYS = (
    "level",
    "region_size",
    "patch_size",
    "format",
    "pretrain_vit_patch",
    "pretrain_vit_region",
    "checkpoint_key",
    "vit_patch_arch",
    "vit_patch_kwargs",
    "vit_region_arch",
    "img_size_pretrained",
    "mean",
    "std",
    "tiling",
)
"""Keys that must not change when a run is resumed: they change what the features mean."""


def validate_extraction(cfg: DictConfig) -> None:
    """Check values the schema's types cannot; raise :class:`ConfigError` naming the key.

    Checked before any work: exactly one of ``region_dir`` (a folder) and ``wsi_csv`` (a file),
    ``coordinates_dir`` a folder and only with ``wsi_csv``, the ``tiling`` values, ``slide_list`` a file, sizes positive
    and nested (``mini_patch_size`` | ``patch_size`` | ``region_size``), ``device`` spelled right,
    ``batch_size`` / ``patch_batch_size`` >= 1, ``num_workers`` >= 0, 3 values in ``mean`` / ``std``,
    ``resume`` with a ``run_id``, ``split_across_gpus`` only with ``level: global``.
    """
    _validate_input(cfg)
    if cfg.slide_list is not None and not Path(cfg.slide_list).is_file():
        raise ConfigError(
            f"slide_list '{cfg.slide_list}' is not a file: give a .txt with one slide id or path per line, or null"
        )
    _validate_sizes(cfg)
    check_at_least({"batch_size": cfg.batch_size, "patch_batch_size": cfg.patch_batch_size})
    check_at_least({"num_workers": cfg.num_workers}, 0)
    check_normalisation(cfg.mean, cfg.std)
    check_architectures(cfg.vit_patch_arch, cfg.vit_region_arch)
    check_run_block(cfg)
    if cfg.split_across_gpus and cfg.level != Level["global"]:
        raise ConfigError("split_across_gpus only applies to level: global (level local has no ViT_region to move)")
    if not str(cfg.format).strip(".") or "/" in str(cfg.format):
        raise ConfigError(f"format must be an image extension such as jpg or png, got '{cfg.format}'")


def _validate_sizes(cfg: DictConfig) -> None:
    check_at_least({key: cfg[key] for key in ("region_size", "patch_size", "mini_patch_size")})
    if cfg.patch_size % cfg.mini_patch_size:
        raise ConfigError(
            f"patch_size ({cfg.patch_size}) must be a multiple of mini_patch_size ({cfg.mini_patch_size})"
        )
    if cfg.region_size % cfg.patch_size:
        raise ConfigError(
            f"region_size ({cfg.region_size}) must be a multiple of patch_size ({cfg.patch_size}), e.g. 1024, 2048 or "
            "4096"
        )


def check_normalisation(mean, std) -> None:
    """Three positive-std values per channel in ``mean`` / ``std``."""
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ConfigError(f"{key} needs one value per RGB channel (3 values), got {list(values)}")
    if any(value <= 0 for value in std):
        raise ConfigError(f"std values must be positive, got {list(std)}")


def check_architectures(
    patch_arch: str, region_arch: str | None = None, keys=("vit_patch_arch", "vit_region_arch")
) -> None:
    """Registered ViT_patch (pixels, or ``timm:<model>``) / ViT_region (grid) names (:mod:`source.models.registry`)."""
    from source.models.registry import EncoderKind, encoder_spec

    for key, name, kind in ((keys[0], patch_arch, EncoderKind.pixels), (keys[1], region_arch, EncoderKind.grid)):
        if name is not None:
            try:
                encoder_spec(name, kind)
            except ValueError as error:
                raise ConfigError(f"{key}: {error}") from error


def _validate_input(cfg: DictConfig) -> None:
    check_one_input(
        cfg,
        "region_dir",
        "region_dir=/data/regions reads <slide_id>/imgs/<x>_<y>.<format> region images",
        "a folder: check the path",
    )
    validate_whole_slide_keys(cfg)
    if cfg.save_region_images and not cfg.wsi_csv:
        raise ConfigError(
            "save_region_images only applies to wsi_csv input (region_dir input already is region images)"
        )


WSI_CSV_USE = (
    "wsi_csv=slides.csv reads whole-slide images (columns slide_id, image_path[, mask_path][, spacing_at_level_0])"
)


def check_one_input(cfg: DictConfig, folder_key: str, folder_use: str, folder_meaning: str) -> None:
    """Exactly one of ``folder_key`` (an existing folder) and ``wsi_csv`` is set.

    Args:
        folder_use: how the folder input is used, for the message (e.g. ``region_dir=... reads ...``).
        folder_meaning: what the folder must be, for the message when it is not one.
    """
    if bool(cfg[folder_key]) == bool(cfg.wsi_csv):
        given = "both are set" if cfg.wsi_csv else "neither is set"
        raise ConfigError(f"give exactly one input, {folder_key} or wsi_csv ({given}): {WSI_CSV_USE}; {folder_use}")
    if cfg[folder_key] and not Path(cfg[folder_key]).is_dir():
        raise ConfigError(f"{folder_key} '{cfg[folder_key]}' is not {folder_meaning}")


def validate_whole_slide_keys(cfg: DictConfig) -> None:
    """``wsi_csv`` a file, ``coordinates_dir`` a folder and only with ``wsi_csv``, and the ``tiling`` block
    (the whole-slide keys shared by extraction, heatmaps and patch pretraining)."""
    if cfg.wsi_csv and not Path(cfg.wsi_csv).is_file():
        raise ConfigError(
            f"wsi_csv '{cfg.wsi_csv}' is not a file: give a csv with columns slide_id, image_path[, mask_path][, "
            "spacing_at_level_0]"
        )
    if cfg.coordinates_dir and not cfg.wsi_csv:
        raise ConfigError("coordinates_dir needs wsi_csv: reused coordinates are read from the whole-slide images")
    if cfg.coordinates_dir and not Path(cfg.coordinates_dir).is_dir():
        raise ConfigError(
            f"coordinates_dir '{cfg.coordinates_dir}' is not a folder of <slide_id>.coordinates.npz / "
            ".coordinates.meta.json files"
        )
    validate_tiling(cfg.tiling)


def validate_tiling(tiling: DictConfig | TilingSettings) -> None:
    """Check the ``tiling`` block; raise :class:`ConfigError` naming the key."""
    if not tiling.spacing > 0:
        raise ConfigError(f"tiling.spacing must be a positive um/px value (0.5 = 20x, HIPT's), got {tiling.spacing}")
    if not 0 <= tiling.tolerance < 1:
        raise ConfigError(f"tiling.tolerance must be in [0, 1), got {tiling.tolerance}")
    if not 0 <= tiling.overlap < 1:
        raise ConfigError(f"tiling.overlap must be in [0, 1), got {tiling.overlap}")
    if not 0 <= tiling.min_tissue_fraction <= 1:
        raise ConfigError(f"tiling.min_tissue_fraction must be in [0, 1], got {tiling.min_tissue_fraction}")
    if tiling.seg_downsample < 1:
        raise ConfigError(f"tiling.seg_downsample must be >= 1, got {tiling.seg_downsample}")
    if tiling.backend not in TILING_BACKENDS:
        raise ConfigError(f"tiling.backend must be one of {list(TILING_BACKENDS)}, got '{tiling.backend}'")
    if tiling.reader not in TILING_BACKENDS:
        raise ConfigError(f"tiling.reader must be one of {list(TILING_BACKENDS)}, got '{tiling.reader}'")
    if tiling.segmentation not in SEGMENTATION_METHODS:
        raise ConfigError(
            f"tiling.segmentation must be one of {list(SEGMENTATION_METHODS)}, got '{tiling.segmentation}'"
        )
