"""Schema and checks of the feature-extraction config (``extract_features.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from source.config.checks import (
    check_architectures,
    check_at_least,
    check_normalisation,
    check_one_input,
    check_shared_run,
    validate_whole_slide_keys,
)
from source.config.common import Level, Precision, WandbConfig
from source.config.run_block import RunBlock, check_run_block
from source.errors import ConfigError
from source.models.settings import COMPILE_MODES
from source.wsi.settings import TilingSettings


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
    save_h5: bool = False
    mask_background: bool = False
    tissue_threshold: float = 0.1
    shared_run: bool = False
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
    jpeg_decode: str = "auto"
    compile: Any = False
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
    "mask_background",
    "tissue_threshold",
)
"""Keys that must not change when a run is resumed: they change what the features mean."""


JPEG_DECODE = ("auto", "cpu", "device")
"""Where whole-slide JPEG tiles are decoded: ``cpu`` in the DataLoader workers, ``device`` in batches on the
encoder's device (nvJPEG on a GPU), ``auto`` = ``device`` on a GPU, else ``cpu``."""


def compile_mode(value: Any) -> Optional[str]:
    """The ``torch.compile`` mode of the ``compile`` key: None for ``false``, ``default`` for ``true``, else the mode
    it names (``reduce-overhead``, ``max-autotune``, ``max-autotune-no-cudagraphs``, ``default``).

    Raises:
        ConfigError: any other value.
    """
    if value is False or value is None:
        return None
    if value is True:
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    raise ConfigError(
        f"compile must be false, true or a torch.compile mode ({', '.join(COMPILE_MODES)}), got '{value}'; "
        "reduce-overhead and max-autotune replay CUDA graphs on a GPU"
    )


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
    check_shared_run(cfg)
    if not 0 <= cfg.tissue_threshold <= 1:
        raise ConfigError(f"tissue_threshold must be a fraction in [0, 1], got {cfg.tissue_threshold}")
    if cfg.split_across_gpus and cfg.level != Level["global"]:
        raise ConfigError("split_across_gpus only applies to level: global (level local has no ViT_region to move)")
    compile_mode(cfg.compile)
    if cfg.jpeg_decode not in JPEG_DECODE:
        raise ConfigError(f"jpeg_decode must be one of {list(JPEG_DECODE)}, got '{cfg.jpeg_decode}'")
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
