"""How whole-slide images become regions or patches: the ``tiling`` block of every whole-slide job.

A plain dataclass with its own checks and no config or heavy imports: the extraction, heatmap and
patch-pretraining schemas embed it as their ``tiling`` key, and the tiling, coordinate and planning
code of :mod:`source.wsi` takes it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from source.errors import ConfigError

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


def validate_tiling(tiling: Any) -> None:
    """Check a ``tiling`` block (a :class:`TilingSettings` or a config node with its keys).

    Raises:
        ConfigError: naming the key (``tiling.<key>``), its value and the valid range.
    """
    if not tiling.spacing > 0:
        raise ConfigError(f"tiling.spacing must be a positive um/px value (0.5 = 20x, HIPT's), got {tiling.spacing}")
    for key in ("tolerance", "overlap"):
        if not 0 <= getattr(tiling, key) < 1:
            raise ConfigError(f"tiling.{key} must be in [0, 1), got {getattr(tiling, key)}")
    if not 0 <= tiling.min_tissue_fraction <= 1:
        raise ConfigError(f"tiling.min_tissue_fraction must be in [0, 1], got {tiling.min_tissue_fraction}")
    if tiling.seg_downsample < 1:
        raise ConfigError(f"tiling.seg_downsample must be >= 1, got {tiling.seg_downsample}")
    for key, valid in (
        ("backend", TILING_BACKENDS),
        ("reader", TILING_BACKENDS),
        ("segmentation", SEGMENTATION_METHODS),
    ):
        if getattr(tiling, key) not in valid:
            raise ConfigError(f"tiling.{key} must be one of {list(valid)}, got '{getattr(tiling, key)}'")
