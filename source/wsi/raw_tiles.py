"""A pyramid level's JPEG tiles read as compressed bytes and decoded in batches on any device (torchvision's
``decode_jpeg``: libjpeg-turbo on the CPU, nvJPEG on a GPU), the first step of decoding whole-slide regions on the GPU.

Only tiled, JPEG-compressed TIFF levels qualify (SVS and most pyramidal TIFFs); the page's JPEG tables, when the
tiles are abbreviated streams, are prepended to each tile. Anything else keeps the CPU readers
(:mod:`source.wsi.reader`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

JPEG_COMPRESSION = 7
"""TIFF's code for (new-style) JPEG compression."""


class UnsupportedTilesError(ValueError):
    """The level is not tiled JPEG: read it with the CPU readers."""


def with_tables(tables: bytes | None, tile: bytes) -> bytes:
    """A decodable JPEG stream: an abbreviated tile with the page's tables (SOI .. tables) spliced in front."""
    if not tables:
        return tile
    return tables[:-2] + tile[2:]  # drop the tables' EOI and the tile's SOI


class RawJpegTiles:
    """The tiles of one level of a pyramidal TIFF.

    Args:
        path: the slide file.
        level: the pyramid level (0 = full resolution).

    Raises:
        UnsupportedTilesError: the level is not tiled or not JPEG-compressed.
    """

    def __init__(self, path: str | Path, level: int) -> None:
        import tifffile

        self.path = Path(path)
        self._tiff = tifffile.TiffFile(self.path)
        levels = self._tiff.series[0].levels
        if not 0 <= level < len(levels):
            raise UnsupportedTilesError(f"'{self.path}' has {len(levels)} levels, not {level + 1}")
        page = levels[level].pages[0]
        if not page.is_tiled or page.compression != JPEG_COMPRESSION:
            raise UnsupportedTilesError(
                f"'{self.path}' level {level} is not tiled JPEG (compression {int(page.compression)})"
            )
        self.page = page
        self.tables = page.jpegtables
        self.tile_width, self.tile_height = int(page.tilewidth), int(page.tilelength)
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.columns = math.ceil(self.width / self.tile_width)
        self.rows = math.ceil(self.height / self.tile_height)
        self.downsample = float(levels[0].pages[0].imagewidth) / self.width

    def tile_bytes(self, row: int, column: int) -> bytes:
        """The decodable JPEG stream of tile (row, column)."""
        index = row * self.columns + column
        handle = self._tiff.filehandle
        handle.seek(int(self.page.dataoffsets[index]))
        return with_tables(self.tables, handle.read(int(self.page.databytecounts[index])))

    def read(self, x: int, y: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``size`` x ``size`` pixels at (x, y) of this level: ``(3, size, size)`` uint8 on ``device``, white
        outside the image. Every tile it touches is decoded in one batch on ``device``."""
        from torchvision.io import ImageReadMode, decode_jpeg

        first_col, first_row = max(x, 0) // self.tile_width, max(y, 0) // self.tile_height
        last_col = min(x + size - 1, self.width - 1) // self.tile_width
        last_row = min(y + size - 1, self.height - 1) // self.tile_height
        region = torch.full((3, size, size), 255, dtype=torch.uint8, device=device)
        if x >= self.width or y >= self.height or x + size <= 0 or y + size <= 0:
            return region
        keys = [(r, c) for r in range(first_row, last_row + 1) for c in range(first_col, last_col + 1)]
        streams = [torch.frombuffer(bytearray(self.tile_bytes(r, c)), dtype=torch.uint8) for r, c in keys]
        tiles = decode_jpeg(streams, mode=ImageReadMode.RGB, device=device)
        for (row, col), tile in zip(keys, tiles, strict=True):
            left, top = col * self.tile_width, row * self.tile_height
            width = min(self.tile_width, self.width - left)  # the padding of edge tiles is not image
            height = min(self.tile_height, self.height - top)
            x0, y0 = max(left, x), max(top, y)
            x1, y1 = min(left + width, x + size), min(top + height, y + size)
            if x1 > x0 and y1 > y0:
                region[:, y0 - y : y1 - y, x0 - x : x1 - x] = tile[:, y0 - top : y1 - top, x0 - left : x1 - left]
        return region

    def close(self) -> None:
        """Close the file."""
        self._tiff.close()
