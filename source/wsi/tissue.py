"""How much of each patch of a region is tissue: a ``(n*n,)`` fraction per region, row-major like the patches.

From the tiling's tissue contours (hs2p's segmentation, in level-0 pixels) when the slide was tiled in this run,
else from the region's own pixels with hs2p's HSV rule (hue 90..180, saturation >= 8, value >= 103, OpenCV units):
region images, and slides whose coordinates were reused. Both rasterise the region at
:data:`MASK_PIXELS_PER_PATCH` pixels per patch side.
"""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

MASK_PIXELS_PER_PATCH = 8
"""Mask resolution: a patch's fraction is the mean of this many squared mask pixels."""
SUPERSAMPLE = 4
"""Polygons are filled at this many times the mask resolution, then averaged."""
HSV_LOW, HSV_HIGH = (90, 8, 103), (180, 255, 255)
"""hs2p's ``hsv`` segmentation range (OpenCV HSV: hue 0..180)."""


def tissue_mask(pixels: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the pixels of an RGB uint8 image that hs2p's HSV rule calls tissue (glass is False)."""
    rgb = np.ascontiguousarray(pixels[..., :3]).astype(np.uint8, copy=False)
    return cv2.inRange(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), HSV_LOW, HSV_HIGH) > 0


def patch_fractions(mask: np.ndarray, grid: int) -> np.ndarray:
    """Mean of a square ``(grid * k, grid * k)`` 0/1 mask over each of its ``grid x grid`` cells, row-major."""
    side = mask.shape[0] // grid
    return mask.reshape(grid, side, grid, side).mean(axis=(1, 3)).astype(np.float32).ravel()


def tissue_from_pixels(region: np.ndarray, grid: int) -> np.ndarray:
    """Tissue fraction of each patch of an ``(R, R, 3)`` uint8 region, by hs2p's HSV rule: ``(grid * grid,)``."""
    side = grid * MASK_PIXELS_PER_PATCH
    small = cv2.resize(np.ascontiguousarray(region[..., :3]), (side, side), interpolation=cv2.INTER_AREA)
    return patch_fractions(tissue_mask(small).astype(np.float32), grid)


def tissue_from_contours(
    contours: Sequence[np.ndarray],
    holes: Optional[Sequence[Sequence[np.ndarray]]],
    corner: tuple[int, int],
    size_lv0: int,
    grid: int,
) -> np.ndarray:
    """Tissue fraction of each patch of the region at level-0 ``corner`` (side ``size_lv0``) from tissue polygons and
    their holes in level-0 pixels (hs2p's contours): ``(grid * grid,)``."""
    side = grid * MASK_PIXELS_PER_PATCH * SUPERSAMPLE
    scale = side / float(size_lv0)
    origin = np.asarray(corner, dtype=np.float64)

    def scaled(polygon: np.ndarray) -> np.ndarray:
        """Mask coordinates with pixel centres at integers, in OpenCV's 4-bit fixed point (OpenCV also fills the
        pixels an edge touches: supersampling keeps that within 1 / SUPERSAMPLE of a mask pixel)."""
        points = (np.asarray(polygon, dtype=np.float64).reshape(-1, 2) - origin) * scale - 0.5
        return np.round(points * 16).astype(np.int32).reshape(-1, 1, 2)

    mask = np.zeros((side, side), dtype=np.uint8)
    for index, contour in enumerate(contours):
        cv2.fillPoly(mask, [scaled(contour)], 1, shift=4)
        for hole in holes[index] if holes is not None and index < len(holes) else ():
            cv2.fillPoly(mask, [scaled(hole)], 0, shift=4)
    return patch_fractions(mask.astype(np.float32), grid)
