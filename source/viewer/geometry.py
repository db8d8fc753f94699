"""Where things lie, in level-0 pixels: the box a slide's pyramid covers, and the pixel lattice of an overlay."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

MAX_ALIGNED_SIDE = 4096
"""An overlay may use more pixels per region than it needs (regions that are not on one grid) up to this side."""


@dataclass(frozen=True)
class Box:
    """A level-0 rectangle: corner ``(x, y)``, ``width`` x ``height``."""

    x: int
    y: int
    width: int
    height: int


def regions_box(corners: np.ndarray, size_lv0: int) -> Box:
    """The bounding box of square regions of side ``size_lv0`` at ``(N, 2)`` corners."""
    x0, y0 = (int(v) for v in corners.min(axis=0))
    x1, y1 = (int(v) + size_lv0 for v in corners.max(axis=0))
    return Box(x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class Lattice:
    """The pixels of an overlay: pixel ``(row, col)`` covers level-0 ``[x + col * cell, x + (col + 1) * cell)`` (and so
    for rows); a region covers ``per_region`` x ``per_region`` pixels.

    Attributes:
        box: the level-0 area the overlay covers (the regions' bounding box).
        per_region: pixels along a region's side.
        cell: level-0 pixels along a pixel's side (``size_lv0 / per_region``).
        width, height: the overlay's size in pixels.
    """

    box: Box
    per_region: int
    cell: float
    width: int
    height: int

    def origins(self, corners: np.ndarray) -> np.ndarray:
        """``(N, 2)`` pixel ``(col, row)`` of each region's first pixel (rounded when regions are off the lattice)."""
        offsets = (corners - np.array([self.box.x, self.box.y])) / self.cell
        return np.rint(offsets).astype(np.int64)


def lattice(corners: np.ndarray, size_lv0: int, per_region: int) -> Lattice:
    """The coarsest lattice on which every region is whole pixels: ``per_region`` pixels per region (1 for one value per
    region, n for n x n patches) times what aligns regions that are not on one grid (hs2p lays each tissue contour's
    regions from its own corner), unless that would make the overlay wider than :data:`MAX_ALIGNED_SIDE` px: then
    regions are placed to the nearest pixel."""
    box = regions_box(corners, size_lv0)
    offsets = (corners - np.array([box.x, box.y])).ravel().astype(int).tolist()
    step = reduce(math.gcd, offsets, int(size_lv0))
    aligned = math.lcm(int(size_lv0) // step, per_region)
    if max(box.width, box.height) / size_lv0 * aligned <= MAX_ALIGNED_SIDE:
        per_region = aligned
    cell = size_lv0 / per_region
    return Lattice(box, per_region, cell, math.ceil(box.width / cell - 1e-9), math.ceil(box.height / cell - 1e-9))
