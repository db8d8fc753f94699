"""A slide canvas at ``downsample``: each region's rendered map is pasted at its (x, y), white elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from source.heatmaps.render import with_colorbar
from source.io import atomic_path

MAX_CANVAS_PIXELS = 400_000_000


class SlideCanvas:
    """A white ``(H, W, C)`` uint8 canvas covering every region of a slide at ``downsample``.

    Args:
        coordinates: level-0 ``(x, y)`` corners of the regions.
        region_size: region side in level-0 pixels.
        downsample: canvas pixel = ``downsample`` level-0 pixels (must divide ``region_size``).
        channels: 3 (RGB) or 4 (RGBA, for highlight maps).
    """

    def __init__(self, coordinates: Sequence[tuple[int, int]], region_size: int, downsample: int, channels: int = 3) -> None:
        if region_size % downsample:
            raise ValueError(f"downsample {downsample} must divide region_size {region_size}")
        self.downsample = downsample
        self.tile = region_size // downsample
        width = max(x for x, _ in coordinates) // downsample + self.tile
        height = max(y for _, y in coordinates) // downsample + self.tile
        if width * height * channels > MAX_CANVAS_PIXELS:
            raise ValueError(f"a {width}x{height} canvas is too large; raise downsample")
        self.pixels = np.full((height, width, channels), 255, dtype=np.uint8)

    def paste(self, x: int, y: int, tile: np.ndarray) -> None:
        """Place a ``(tile, tile, C)`` rendering of the region whose level-0 corner is (x, y)."""
        if tile.shape[:2] != (self.tile, self.tile):
            raise ValueError(f"tile of shape {tile.shape[:2]} does not match the canvas tile {self.tile}")
        left, top = x // self.downsample, y // self.downsample
        self.pixels[top : top + self.tile, left : left + self.tile] = tile

    def save(self, path: Path, cmap: str) -> Path:
        """Write the canvas with a colorbar as PNG (atomically)."""
        with atomic_path(path) as temporary:
            with_colorbar(self.pixels, cmap).save(temporary, format="PNG")
        return path


def save_png(image: np.ndarray | Image.Image, path: Path) -> Path:
    """Write an RGB / RGBA array or image as PNG (atomically)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
    return path
