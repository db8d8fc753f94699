"""Schema and checks of the heatmap config (``attention_visualization.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from source.config.checks import check_architectures, check_at_least, check_shared_run, validate_whole_slide_keys
from source.config.common import Precision
from source.config.run_block import RunBlock, check_run_block
from source.errors import ConfigError
from source.heatmaps.settings import RenderSettings
from source.wsi.settings import TilingSettings


@dataclass
class HeatmapConfig(RunBlock, RenderSettings):
    """Every key of ``config/heatmaps/default.yaml`` (the drawing keys come from :class:`RenderSettings`)."""

    patch_fp: Optional[str] = None
    region_fp: Optional[str] = None
    region_dir: Optional[str] = None
    wsi_csv: Optional[str] = None
    coordinates_dir: Optional[str] = None
    extraction_run: Optional[str] = None
    tiling: TilingSettings = field(default_factory=TilingSettings)
    slide_id: Optional[str] = None
    slide_csv: Optional[str] = None
    format: str = "jpg"
    patch_weights: Optional[str] = "checkpoints/vit256_small_dino.pth"
    region_weights: Optional[str] = "checkpoints/vit4k_xs_dino.pth"
    slide_weights: Optional[str] = None
    checkpoint_key: str = "teacher"
    vit_patch_arch: str = "vit_small"
    vit_patch_kwargs: Any = None
    vit_region_arch: str = "vit4k_xs"
    img_size_pretrained: Optional[int] = None
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    experiment_name: str = "heatmaps"
    seed: int = 0
    precision: Precision = Precision.fp32
    patch_batch_size: int = 64
    mask_background: bool = False
    tissue_threshold: float = 0.1
    shared_run: bool = False


SLIDE_INPUTS = ("region_dir", "wsi_csv", "extraction_run")
"""Where slides come from: region image folders, whole-slide images, or the slides of an extraction run."""


def slide_input(cfg: DictConfig) -> Optional[str]:
    """The slide input key that is set (``region_dir``, ``wsi_csv`` or ``extraction_run``), or None."""
    return next((key for key in SLIDE_INPUTS if cfg[key]), None)


def validate_heatmaps(cfg: DictConfig) -> None:
    """Check values the schema's types cannot; raise :class:`ConfigError` naming the key."""
    _validate_inputs(cfg)
    validate_whole_slide_keys(cfg)
    _validate_drawing(cfg)
    check_architectures(cfg.vit_patch_arch, cfg.vit_region_arch)
    check_at_least({"patch_batch_size": cfg.patch_batch_size})
    if not 0 <= cfg.tissue_threshold <= 1:
        raise ConfigError(f"tissue_threshold must be a fraction in [0, 1], got {cfg.tissue_threshold}")
    check_run_block(cfg)
    check_shared_run(cfg)


def _validate_inputs(cfg: DictConfig) -> None:
    if not (cfg.patch_fp or cfg.region_fp or cfg.slide_id or cfg.slide_csv or slide_input(cfg)):
        raise ConfigError(
            "nothing to do: set patch_fp, region_fp, wsi_csv (whole slides), extraction_run (the slides of an "
            "extraction run) or region_dir with slide_id / slide_csv"
        )
    for key in ("patch_fp", "region_fp", "slide_csv"):
        if cfg[key] and not Path(cfg[key]).is_file():
            raise ConfigError(f"{key} '{cfg[key]}' is not a file")
    inputs = [key for key in SLIDE_INPUTS if cfg[key]]
    if len(inputs) > 1:
        raise ConfigError(
            f"give one slide input, not {' and '.join(inputs)}: {', '.join(SLIDE_INPUTS)} are alternatives"
        )
    if (cfg.slide_id or cfg.slide_csv) and not inputs:
        raise ConfigError(
            "slide_id / slide_csv pick slides of a slide input: also set wsi_csv, extraction_run or region_dir"
        )
    if cfg.region_dir and not Path(cfg.region_dir).is_dir():
        raise ConfigError(
            f"region_dir '{cfg.region_dir}' is not a folder: give the folder of <slide_id>/imgs/<x>_<y>.<format>"
        )
    if cfg.extraction_run and not Path(cfg.extraction_run).is_dir():
        raise ConfigError(
            f"extraction_run '{cfg.extraction_run}' is not a folder: give output_dir/<experiment_name>/<run_id> of an "
            "extraction"
        )


def _validate_drawing(cfg: DictConfig) -> None:
    if cfg.region_size % cfg.patch_size:
        raise ConfigError(f"region_size ({cfg.region_size}) must be a multiple of patch_size ({cfg.patch_size})")
    if cfg.downscale < 1 or cfg.patch_size % cfg.downscale or cfg.downscale > 16:
        raise ConfigError(
            f"downscale ({cfg.downscale}) must divide patch_size ({cfg.patch_size}) and be at most 16 (one pixel per "
            "token)"
        )
    check_at_least({"canvas_width": cfg.canvas_width}, 64)
    if cfg.downsample is not None and (
        cfg.downsample < 1 or cfg.downsample % cfg.downscale or cfg.region_size % cfg.downsample
    ):
        raise ConfigError(
            f"downsample ({cfg.downsample}) must be a multiple of downscale ({cfg.downscale}) and divide region_size "
            f"({cfg.region_size})"
        )
    for key in ("alpha", "opacity", "gamma", "threshold", "highlight"):
        if cfg[key] is not None and not 0 <= cfg[key] <= 1:
            raise ConfigError(f"{key} must be between 0 and 1, got {cfg[key]}")
    if cfg.heads is not None and (not cfg.heads or min(cfg.heads) < 0):
        raise ConfigError(f"heads must be null (all) or a list of head indices >= 0, got {list(cfg.heads)}")
