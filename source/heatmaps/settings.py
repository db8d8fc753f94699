"""The drawing settings of heatmaps (no heavy imports: the config schema extends them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class RenderSettings:
    """How maps are drawn; also the drawing keys of the heatmap config (its schema extends this class)."""

    region_size: int = 4096
    patch_size: int = 256
    downscale: int = 4
    downsample: Optional[int] = None
    canvas_width: int = 2000
    cmap: str = "jet"
    alpha: float = 0.5
    restrict_to_tissue: bool = True
    threshold: Optional[float] = None
    highlight: Optional[float] = None
    opacity: float = 0.3
    granular: bool = False
    gamma: float = 0.5
    heads: Optional[list[int]] = None
    all_heads: bool = False
    save_region_maps: bool = True
    geojson_patches: bool = False
