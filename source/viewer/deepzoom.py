"""A slide's Deep Zoom pyramid, written tile by tile: ``<folder>/<level>/<col>_<row>.jpeg``.

A level the slide's own pyramid has (the finest always) is read from the slide with OpenSlide's ``DeepZoomGenerator``,
one tile-sized read per tile; any other level, which would read larger areas of a finer level (all of the coarsest
level for the last ones), is built from the level below it, already written: each tile from the few tiles under it,
halved. No read and no image is ever larger than a few tiles, whatever the slide's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image
from tqdm import tqdm

from source.viewer.pyramid import SlideView

MAX_READ_FACTOR = 1
"""A level is read from the slide when the slide has a level at most this many times finer (else it is halved from the
level below: faster than reading 4x the pixels, and as close to the slide)."""
DZI_XMLNS = "http://schemas.microsoft.com/deepzoom/2008"
FORMAT = "jpeg"


@dataclass(frozen=True)
class TileSettings:
    """``tile_size`` px tiles sharing ``overlap`` px with each neighbour, JPEG ``quality``."""

    tile_size: int = 254
    overlap: int = 1
    quality: int = 85


@dataclass(frozen=True)
class DeepZoom:
    """A written pyramid: level ``levels - 1`` is ``width`` x ``height`` px (the box at level 0), each level half the
    next; ``folder/<level>/<col>_<row>.jpeg``."""

    folder: Path
    width: int
    height: int
    levels: int
    settings: TileSettings

    def tile_source(self, url: str) -> dict:
        """The inline Deep Zoom description OpenSeadragon opens without reading a ``.dzi`` file (``url``: the
        folder, relative to the page, with a trailing ``/``)."""
        s = self.settings
        return {
            "Image": {
                "xmlns": DZI_XMLNS,
                "Url": url,
                "Format": FORMAT,
                "Overlap": str(s.overlap),
                "TileSize": str(s.tile_size),
                "Size": {"Width": str(self.width), "Height": str(self.height)},
            }
        }

    def level_size(self, level: int) -> tuple[int, int]:
        """``(width, height)`` of a level."""
        scale = 2 ** (self.levels - 1 - level)
        return max(1, math.ceil(self.width / scale)), max(1, math.ceil(self.height / scale))

    def tile_box(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the level's pixels tile ``(col, row)`` holds, overlap included."""
        size, step, overlap = self.level_size(level), self.settings.tile_size, self.settings.overlap
        bounds = []
        for index, extent in zip((col, row), size, strict=True):
            last = math.ceil(extent / step) - 1
            bounds.append(
                (
                    index * step - (overlap if index > 0 else 0),
                    min((index + 1) * step, extent) + (overlap if index < last else 0),
                )
            )
        return bounds[0][0], bounds[1][0], bounds[0][1], bounds[1][1]

    def tile_path(self, level: int, col: int, row: int) -> Path:
        return self.folder / str(level) / f"{col}_{row}.{FORMAT}"

    def read(self, level: int, x0: int, y0: int, x1: int, y1: int) -> Image.Image:
        """Pixels ``[x0, x1) x [y0, y1)`` of a written level, from the tiles that hold them (RGB)."""
        step = self.settings.tile_size
        canvas = Image.new("RGB", (x1 - x0, y1 - y0), "white")
        for row in range(y0 // step, (y1 - 1) // step + 1):
            for col in range(x0 // step, (x1 - 1) // step + 1):
                left, top, _, _ = self.tile_box(level, col, row)
                with Image.open(self.tile_path(level, col, row)) as tile:
                    canvas.paste(tile, (left - x0, top - y0))
        return canvas

    def level_pixels(self, level: int) -> np.ndarray:
        """A whole (small) level: ``(height, width, 3)`` uint8."""
        width, height = self.level_size(level)
        return np.asarray(self.read(level, 0, 0, width, height))

    def level_within(self, side: int) -> int:
        """The finest level whose longer side is at most ``side`` px."""
        return max(level for level in range(self.levels) if max(self.level_size(level)) <= side)


def write_deep_zoom(view: SlideView, folder: Path, settings: TileSettings, label: str, progress: bool) -> DeepZoom:
    """Write every tile of the pyramid of ``view``, finest level first.

    Args:
        view: the slide (its box).
        folder: where the level folders go.
        label: the progress bar's name (the slide id).
        progress: show a tqdm bar.

    Raises:
        BadInputError: the slide cannot be read.
    """
    generator = DeepZoomGenerator(view, settings.tile_size, settings.overlap)
    width, height = view.dimensions
    zoom = DeepZoom(folder, width, height, generator.level_count, settings)
    with tqdm(total=generator.tile_count, desc=label, unit="tile", disable=not progress, leave=False) as bar:
        for level in reversed(range(zoom.levels)):
            (folder / str(level)).mkdir(parents=True, exist_ok=True)
            from_slide = _reads_slide(view, zoom, level)
            cols, rows = generator.level_tiles[level]
            for row in range(rows):
                for col in range(cols):
                    tile = generator.get_tile(level, (col, row)) if from_slide else _halved(zoom, level, col, row)
                    tile.save(zoom.tile_path(level, col, row), "JPEG", quality=settings.quality)
                    bar.update()
    return zoom


def _reads_slide(view: SlideView, zoom: DeepZoom, level: int) -> bool:
    """Whether ``level`` is read from the slide: the slide has a level at most :data:`MAX_READ_FACTOR` times finer
    (the finest level always is)."""
    downsample = 2 ** (zoom.levels - 1 - level)
    nearest = view.level_downsamples[view.get_best_level_for_downsample(downsample)]
    return level == zoom.levels - 1 or downsample / nearest <= MAX_READ_FACTOR


def _halved(zoom: DeepZoom, level: int, col: int, row: int) -> Image.Image:
    """Tile ``(col, row)`` of ``level`` from the written level below: its pixels there, 2 x 2 averaged."""
    x0, y0, x1, y1 = zoom.tile_box(level, col, row)
    below_width, below_height = zoom.level_size(level + 1)
    finer = zoom.read(level + 1, 2 * x0, 2 * y0, min(2 * x1, below_width), min(2 * y1, below_height))
    return finer.reduce(2)
