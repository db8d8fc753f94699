"""The overlay images, each at its own resolution (never a full-resolution raster): a value layer has a few pixels per
region (one, or n x n for patches), the grid a few dozen per region, the tissue outlines the size of a thumbnail.
OpenSeadragon places each over the slide and draws it without smoothing, so a region is a crisp block."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from source.viewer.geometry import Lattice, regions_box
from source.viewer.layers import Scale
from source.wsi.tissue import tissue_mask

GRID_MAX_SIDE = 4096
"""The grid image's longer side at most (pixels per region: between 8 and 96)."""
GRID_COLOUR, TEXT_COLOUR, TISSUE_COLOUR = (40, 220, 255, 255), (255, 255, 255, 255), (60, 220, 60, 255)
MIN_TISSUE_AREA = 16
"""Tissue specks smaller than this many thumbnail pixels get no outline."""


@dataclass(frozen=True)
class Placed:
    """An overlay image and the level-0 rectangle it covers (corner ``x``, ``y``; ``width`` x ``height``)."""

    image: Image.Image
    x: float
    y: float
    width: float
    height: float


def value_overlay(values: np.ndarray, corners: np.ndarray, grid: Lattice, scale: Scale) -> Image.Image:
    """An RGBA image of ``grid``'s size: each region's block in the colour of its value (``(N,)``), or each patch's
    (``(N, n, n)``); transparent where there is no region or no value. Regions are painted in row order (the last on
    top where they overlap)."""
    colours = scale.colours(values)
    image = np.zeros((grid.height, grid.width, 4), dtype=np.uint8)
    side = grid.per_region
    for (col, row), colour in zip(grid.origins(corners), colours, strict=True):
        if colour.ndim == 1:  # one value per region
            block = np.broadcast_to(colour, (side, side, 4))
        else:  # n x n patches, side / n pixels each
            block = colour.repeat(side // len(colour), axis=0).repeat(side // len(colour), axis=1)
        height, width = min(side, grid.height - row), min(side, grid.width - col)
        image[row : row + height, col : col + width] = block[:height, :width]
    return Image.fromarray(image, "RGBA")


def grid_overlay(corners: np.ndarray, size_lv0: int, labels: list[str]) -> Placed:
    """The regions' outlines, each with its label (when a region is at least 48 px)."""
    box = regions_box(corners, size_lv0)
    across = max(box.width, box.height) / size_lv0
    per_region = int(min(96, max(8, GRID_MAX_SIDE // max(1.0, across))))
    scale = per_region / size_lv0
    image = Image.new("RGBA", (max(1, round(box.width * scale)), max(1, round(box.height * scale))), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    font = _label_font(per_region, labels) if per_region >= 48 else None
    for (x, y), label in zip(corners.tolist(), labels, strict=True):
        left, top = round((x - box.x) * scale), round((y - box.y) * scale)
        draw.rectangle((left, top, left + per_region - 1, top + per_region - 1), outline=GRID_COLOUR, width=1)
        if font is not None:
            draw.multiline_text(
                (left + 4, top + 3), label, fill=TEXT_COLOUR, font=font, stroke_width=1, stroke_fill=(0, 0, 0, 255)
            )
    return Placed(image, box.x, box.y, image.width / scale, image.height / scale)


def _label_font(per_region: int, labels: list[str]) -> ImageFont.FreeTypeFont:
    """The labels' font: a fifth of a region's side, smaller where the widest line (a contribution's ``.4g`` has up to
    10 characters) would cross the region's right edge (4 px in from the left, the stroke and a margin)."""
    size = per_region // 5
    font = ImageFont.load_default(size=size)
    widest = max((line for label in labels for line in label.split("\n")), key=font.getlength, default="")
    while size > 1 and font.getlength(widest) > per_region - 8:
        size -= 1
        font = ImageFont.load_default(size=size)
    return font


def tissue_overlay(pixels: np.ndarray) -> Image.Image:
    """Outlines of the tissue of an ``(H, W, 3)`` uint8 thumbnail (hs2p's HSV rule, small specks and holes closed):
    RGBA of the same size, transparent but for the outlines."""
    mask = tissue_mask(pixels).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    kept = [contour for contour in contours if cv2.contourArea(contour) >= MIN_TISSUE_AREA]
    outline = np.zeros((*mask.shape, 4), dtype=np.uint8)
    cv2.drawContours(outline, kept, -1, TISSUE_COLOUR, 1)
    return Image.fromarray(outline, "RGBA")
