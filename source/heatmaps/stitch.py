"""A slide canvas: each region's rendered map pasted where the region lies on the slide.

The canvas is drawn over the slide's own thumbnail when there is one (whole-slide input), so tissue
shows everywhere and the attention colours only the encoded regions; otherwise it is white.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from source.heatmaps.render import with_colorbar
from source.io import atomic_path

MAX_CANVAS_PIXELS = 400_000_000
TITLE_HEIGHT = 24


class SlideCanvas:
    """A ``(H, W, C)`` uint8 canvas covering every region of a slide (and the whole slide under a thumbnail).

    A region of ``region_size`` px covers ``size_lv0`` level-0 px of the slide and ``region_size //
    downsample`` canvas px: the canvas scale is ``(region_size // downsample) / size_lv0`` canvas px
    per level-0 px.

    Args:
        coordinates: level-0 ``(x, y)`` corners of the regions.
        region_size: region side in pixels (at the region spacing).
        downsample: canvas pixel = ``downsample`` region pixels (must divide ``region_size``).
        channels: 3 (RGB) or 4 (RGBA, for highlight maps).
        size_lv0: a region's side in level-0 pixels (default ``region_size``: region folders, whose
            pixels are level-0 pixels).
        background: ``(h, w, 3)`` uint8 thumbnail of the whole slide at the canvas scale, or None (white).
    """

    def __init__(
        self,
        coordinates: Sequence[tuple[int, int]],
        region_size: int,
        downsample: int,
        channels: int = 3,
        size_lv0: Optional[int] = None,
        background: Optional[np.ndarray] = None,
    ) -> None:
        if region_size % downsample:
            raise ValueError(f"downsample {downsample} must divide region_size {region_size}")
        self.tile = region_size // downsample
        self.size_lv0 = int(size_lv0 or region_size)
        width = max(self.position(x) for x, _ in coordinates) + self.tile
        height = max(self.position(y) for _, y in coordinates) + self.tile
        if background is not None:
            height, width = max(height, background.shape[0]), max(width, background.shape[1])
        if width * height * channels > MAX_CANVAS_PIXELS:
            raise ValueError(f"a {width}x{height} canvas is too large; raise downsample")
        self.pixels = np.full((height, width, channels), 255, dtype=np.uint8)
        if background is not None:
            self.pixels[: background.shape[0], : background.shape[1], :3] = background[..., :3]

    def position(self, level0: int) -> int:
        """Canvas pixel of a level-0 coordinate (exact integer arithmetic: regions on a grid tile without seams)."""
        return int(level0) * self.tile // self.size_lv0

    def paste(self, x: int, y: int, tile: np.ndarray) -> None:
        """Place a ``(tile, tile, C)`` rendering of the region whose level-0 corner is (x, y)."""
        if tile.shape[:2] != (self.tile, self.tile):
            raise ValueError(f"tile of shape {tile.shape[:2]} does not match the canvas tile {self.tile}")
        left, top = self.position(x), self.position(y)
        self.pixels[top : top + self.tile, left : left + self.tile] = tile

    def save(self, path: Path, cmap: str, title: Optional[str] = None) -> Path:
        """Write the canvas with a colorbar (and ``title`` above it) as PNG, atomically."""
        picture = with_colorbar(self.pixels, cmap)
        if title:
            picture = titled(picture, title)
        with atomic_path(path) as temporary:
            picture.save(temporary, format="PNG")
        return path


def titled(picture: Image.Image, title: str) -> Image.Image:
    """``picture`` under a white strip of :data:`TITLE_HEIGHT` px holding ``title``."""
    white = (255,) * len(picture.getbands())
    out = Image.new(picture.mode, (picture.width, picture.height + TITLE_HEIGHT), white)
    out.paste(picture, (0, TITLE_HEIGHT))
    ImageDraw.Draw(out).text((4, 6), title, fill=(0,) * 3 + ((255,) if picture.mode == "RGBA" else ()))
    return out


def save_png(image: np.ndarray | Image.Image, path: Path) -> Path:
    """Write an RGB / RGBA array or image as PNG (atomically)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG")
    return path
