"""Schema and checks of the slide-viewer config (``view_slides.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from source.config.checks import check_shared_run
from source.config.run_block import RunBlock, check_run_block
from source.errors import ConfigError


@dataclass
class ViewerConfig(RunBlock):
    """Every key of ``config/viewer/default.yaml``."""

    heatmap_run: Optional[str] = None
    contribution_run: Optional[str] = None
    predictions: Optional[str] = None
    wsi_csv: Optional[str] = None
    extraction_run: Optional[str] = None
    tile_size: int = 254
    tile_overlap: int = 1
    jpeg_quality: int = 85
    tissue_bbox_only: bool = True
    serve: bool = False
    shared_run: bool = False
    experiment_name: str = "viewer"


SLIDE_SOURCES = ("heatmap_run", "contribution_run", "extraction_run", "wsi_csv")
"""The keys that can name the slides to view (``predictions`` only annotates them)."""


def validate_viewer(cfg: DictConfig) -> None:
    """Check values the schema's types cannot; raise :class:`ConfigError` naming the key."""
    if not any(cfg[key] for key in SLIDE_SOURCES):
        raise ConfigError(
            "nothing to view: set heatmap_run (an attention_visualization.py run folder), contribution_run (a "
            "contribution_maps.py run folder), or the slides alone with extraction_run / wsi_csv"
        )
    for key in ("heatmap_run", "contribution_run", "extraction_run"):
        if cfg[key] and not Path(cfg[key]).is_dir():
            raise ConfigError(f"{key} '{cfg[key]}' is not a folder: give output_dir/<experiment_name>/<run_id>")
    for key in ("predictions", "wsi_csv"):
        if cfg[key] and not Path(cfg[key]).is_file():
            raise ConfigError(f"{key} '{cfg[key]}' is not a file")
    if cfg.wsi_csv and cfg.extraction_run:
        raise ConfigError("give the slides once: wsi_csv and extraction_run are both set")
    if not 64 <= cfg.tile_size <= 4096:
        raise ConfigError(
            f"tile_size must be between 64 and 4096 px (254 with tile_overlap 1 fits 256), got {cfg.tile_size}"
        )
    if not 0 <= cfg.tile_overlap <= cfg.tile_size // 4:
        raise ConfigError(
            f"tile_overlap must be between 0 and tile_size / 4 ({cfg.tile_size // 4}), got {cfg.tile_overlap}"
        )
    if not 1 <= cfg.jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality must be between 1 and 100, got {cfg.jpeg_quality}")
    check_run_block(cfg)
    check_shared_run(cfg)
