"""A pyramid level's JPEG tiles read as compressed bytes and decoded in batches on any device (torchvision's
``decode_jpeg``: libjpeg-turbo on the CPU, nvJPEG on a GPU), the first step of decoding whole-slide regions on the GPU.

Only tiled, JPEG-compressed TIFF levels qualify (SVS and most pyramidal TIFFs); the page's JPEG tables, when the
tiles are abbreviated streams, are prepended to each tile. Anything else keeps the CPU readers
(:mod:`source.wsi.reader`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

JPEG_COMPRESSION = 7
"""TIFF's code for (new-style) JPEG compression."""
RGB_PHOTOMETRIC = 2
"""TIFF's code for RGB pixels: JPEG tiles stored without the YCbCr transform (Aperio SVS)."""
ADOBE_NO_TRANSFORM = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
"""An APP14 "Adobe" segment with transform 0: tells a JPEG decoder the components are RGB, not YCbCr."""


class UnsupportedTilesError(ValueError):
    """The level is not tiled JPEG: read it with the CPU readers."""


def with_tables(tables: bytes | None, tile: bytes, rgb: bool = False) -> bytes:
    """A decodable JPEG stream: an abbreviated tile with the page's tables (SOI .. tables) spliced in front, and for
    ``rgb`` tiles (no YCbCr transform) an Adobe segment saying so right after SOI."""
    stream = tile if not tables else tables[:-2] + tile[2:]  # drop the tables' EOI and the tile's SOI
    return stream[:2] + ADOBE_NO_TRANSFORM + stream[2:] if rgb else stream


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
        self.rgb = int(page.photometric) == RGB_PHOTOMETRIC
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
        return with_tables(self.tables, handle.read(int(self.page.databytecounts[index])), self.rgb)

    def decodes_like_tifffile(self, tolerance: int = 2) -> bool:
        """Whether torchvision decodes the level's centre tile as tifffile does (within ``tolerance`` grey levels); a
        level where it does not stays on the CPU readers."""
        from torchvision.io import ImageReadMode, decode_jpeg

        row, column = self.rows // 2, self.columns // 2
        index = row * self.columns + column
        handle = self._tiff.filehandle
        handle.seek(int(self.page.dataoffsets[index]))
        data = handle.read(int(self.page.databytecounts[index]))
        expected = self.page.decode(data, index, jpegtables=self.tables)[0]
        stream = torch.frombuffer(bytearray(self.tile_bytes(row, column)), dtype=torch.uint8)
        decoded = decode_jpeg(stream, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
        expected = expected.reshape(expected.shape[-3:])[: decoded.shape[0], : decoded.shape[1], :3]
        return bool(abs(decoded.astype(int) - expected.astype(int)).max() <= tolerance)

    def raw_region(self, x: int, y: int, size: int) -> "RawRegion":
        """The compressed tiles that cover the ``size`` x ``size`` pixels at (x, y) of this level, and where each goes
        (no decoding: cheap enough for a DataLoader worker)."""
        streams, placements = [], []
        if not (x >= self.width or y >= self.height or x + size <= 0 or y + size <= 0):
            first_col, first_row = max(x, 0) // self.tile_width, max(y, 0) // self.tile_height
            last_col = min(x + size - 1, self.width - 1) // self.tile_width
            last_row = min(y + size - 1, self.height - 1) // self.tile_height
            for row in range(first_row, last_row + 1):
                for col in range(first_col, last_col + 1):
                    left, top = col * self.tile_width, row * self.tile_height
                    width = min(self.tile_width, self.width - left)  # the padding of edge tiles is not image
                    height = min(self.tile_height, self.height - top)
                    x0, y0 = max(left, x), max(top, y)
                    x1, y1 = min(left + width, x + size), min(top + height, y + size)
                    if x1 > x0 and y1 > y0:
                        streams.append(self.tile_bytes(row, col))
                        placements.append((y0 - y, x0 - x, y0 - top, x0 - left, y1 - y0, x1 - x0))
        return RawRegion(size, streams, placements)

    def read(self, x: int, y: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``size`` x ``size`` pixels at (x, y) of this level: ``(3, size, size)`` uint8 on ``device``, white
        outside the image. Every tile it touches is decoded in one batch on ``device``."""
        return decode_regions([self.raw_region(x, y, size)], torch.device(device))[0]

    def close(self) -> None:
        """Close the file."""
        self._tiff.close()


@dataclass
class RawRegion:
    """A region as compressed JPEG tiles and their placements.

    Attributes:
        size: the region's side in pixels.
        streams: decodable JPEG streams, one per tile.
        placements: per stream ``(dst_y, dst_x, src_y, src_x, height, width)``: the tile's ``height`` x ``width``
            pixels from ``(src_y, src_x)`` go to ``(dst_y, dst_x)`` of the region; the rest of the region is white.
    """

    size: int
    streams: list[bytes] = field(default_factory=list)
    placements: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)


def decode_regions(regions: list[RawRegion], device: torch.device) -> torch.Tensor:
    """Decode every tile of ``regions`` in one batch on ``device`` (nvJPEG on a GPU) and assemble the regions there.

    Returns:
        ``(B, 3, S, S)`` uint8 on ``device``.

    Raises:
        RuntimeError: a tile that does not decode (callers decode region by region to find it).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    size = regions[0].size
    out = torch.full((len(regions), 3, size, size), 255, dtype=torch.uint8, device=device)
    streams = [torch.frombuffer(bytearray(stream), dtype=torch.uint8) for r in regions for stream in r.streams]
    if not streams:
        return out
    tiles = iter(decode_jpeg(streams, mode=ImageReadMode.RGB, device=device))
    for index, region in enumerate(regions):
        for (dst_y, dst_x, src_y, src_x, height, width), tile in zip(region.placements, tiles, strict=False):
            out[index, :, dst_y : dst_y + height, dst_x : dst_x + width] = tile[
                :, src_y : src_y + height, src_x : src_x + width
            ]
    return out
