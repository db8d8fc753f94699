"""Small pyramidal TIFF slides for the whole-slide tests, written with tifffile (OpenSlide's generic TIFF)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import tifffile


def write_pyramid(
    path: Path,
    level0: np.ndarray,
    spacing_um: Optional[float],
    downsamples: Sequence[int] = (1, 4),
    tile: int = 256,
    compression: str = "zlib",
) -> Path:
    """Write ``level0`` ``(H, W, 3)`` (or ``(H, W)`` for a mask) as a tiled pyramid with one page per downsample.

    ``spacing_um`` sets the resolution tags (pixels per centimetre) from which OpenSlide reports
    ``openslide.mpp-x``; ``None`` writes no resolution, so the slide has no spacing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as writer:
        for index, factor in enumerate(downsamples):
            height, width = level0.shape[0] // factor, level0.shape[1] // factor
            pixels = level0 if factor == 1 else cv2.resize(level0, (width, height), interpolation=cv2.INTER_AREA)
            options = {}
            if spacing_um is not None:
                per_cm = 1e4 / (spacing_um * factor)
                options = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
            writer.write(
                pixels,
                tile=(tile, tile),
                compression=compression,
                photometric="rgb" if pixels.ndim == 3 else "minisblack",
                subfiletype=0 if index == 0 else 1,
                **options,
            )
    return path
