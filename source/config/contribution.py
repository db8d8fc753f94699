"""Schema and checks of the contribution-map config (``contribution_maps.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from source.config.checks import check_at_least
from source.config.run_block import RunBlock, check_run_block
from source.errors import ConfigError
from source.explain.settings import CanvasStyle, ExplainSettings, PixelSources


@dataclass
class ContributionConfig(RunBlock):
    """Every key of ``config/contribution/default.yaml``."""

    checkpoint: Optional[str] = None
    run_dir: Optional[str] = None
    checkpoint_name: str = "best"
    features_dir: Optional[str] = None
    slide_id: Optional[str] = None
    slide_csv: Optional[str] = None
    target_class: Optional[int] = None
    patch_contributions: bool = True
    batch_size: int = 64
    extraction_run: Optional[str] = None
    wsi_csv: Optional[str] = None
    coordinates_dir: Optional[str] = None
    region_dir: Optional[str] = None
    format: str = "jpg"
    canvases: Optional[bool] = None
    canvas_width: int = 2000
    top_k: int = 4
    cmap: str = "RdBu_r"
    opacity: float = 0.6
    restrict_to_tissue: bool = True
    experiment_name: str = "contributions"


PIXEL_INPUTS = ("extraction_run", "wsi_csv", "region_dir")
"""Where the pictures get the slides' pixels (at most one)."""


def validate_contribution(cfg: DictConfig) -> None:
    """Check values the schema's types cannot; raise :class:`ConfigError` naming the key."""
    if bool(cfg.checkpoint) == bool(cfg.run_dir):
        raise ConfigError(
            "give one trained model: checkpoint=<best.pt of train/*.py> or run_dir=<a training run folder> (its "
            "<checkpoint_name>.pt)"
        )
    if bool(cfg.slide_id) == bool(cfg.slide_csv):
        raise ConfigError("give the slides to explain: slide_id=<one id> or slide_csv=<csv with a slide_id column>")
    for key in ("checkpoint", "slide_csv", "wsi_csv"):
        if cfg[key] and not Path(cfg[key]).is_file():
            raise ConfigError(f"{key} '{cfg[key]}' is not a file")
    for key in ("run_dir", "features_dir", "extraction_run", "coordinates_dir", "region_dir"):
        if cfg[key] and not Path(cfg[key]).is_dir():
            raise ConfigError(f"{key} '{cfg[key]}' is not a folder")
    _validate_pixel_inputs(cfg)
    check_at_least({"batch_size": cfg.batch_size, "canvas_width": cfg.canvas_width})
    check_at_least({"top_k": cfg.top_k}, 0)
    if not 0 <= cfg.opacity <= 1:
        raise ConfigError(f"opacity must be between 0 and 1, got {cfg.opacity}")
    check_run_block(cfg)


def _validate_pixel_inputs(cfg: DictConfig) -> None:
    """At most one of :data:`PIXEL_INPUTS`; ``coordinates_dir`` only with ``wsi_csv``; ``canvases=true`` with one."""
    pixel_inputs = [key for key in PIXEL_INPUTS if cfg[key]]
    if len(pixel_inputs) > 1:
        raise ConfigError(f"give the slides' pixels once: {' and '.join(pixel_inputs)} are both set")
    if cfg.coordinates_dir and not cfg.wsi_csv:
        raise ConfigError("coordinates_dir goes with wsi_csv (the corners of the slides it lists)")
    if cfg.canvases and not pixel_inputs:
        raise ConfigError(
            "canvases=true needs the slides' pixels: set extraction_run (the whole-slide extraction run whose features "
            "the model reads), wsi_csv (with coordinates_dir, or h5 features with coords) or region_dir (or leave "
            "canvases blank: drawn when pixels are given)"
        )


def explain_settings(cfg: DictConfig) -> ExplainSettings:
    """The contribution job's settings, read from its (validated) config."""
    return ExplainSettings(
        features_dir=cfg.features_dir,
        target_class=cfg.target_class,
        patch_contributions=bool(cfg.patch_contributions),
        batch_size=cfg.batch_size,
        canvases=cfg.canvases,
        top_k=cfg.top_k,
        resume=bool(cfg.resume),
        style=CanvasStyle(cfg.cmap, cfg.opacity, cfg.canvas_width, cfg.restrict_to_tissue),
        pixels=PixelSources(cfg.extraction_run, cfg.wsi_csv, cfg.coordinates_dir, cfg.region_dir, cfg.format),
    )
