"""Raw JPEG tiles decoded by torchvision give the pixels tifffile decodes (the GPU decoding path, tested on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from source.wsi.raw_tiles import RawJpegTiles, UnsupportedTilesError, with_tables
from tests.wsi.slides import write_pyramid


@pytest.fixture(scope="module")
def jpeg_slide(he_pixels, tmp_path_factory):
    return write_pyramid(tmp_path_factory.mktemp("raw") / "he.tif", he_pixels, 0.5, (1, 4), compression="jpeg")


@pytest.mark.parametrize(
    "level, x, y, size",
    [(0, 0, 0, 512), (0, 300, 700, 1024), (0, 2000, 2800, 512), (1, 100, 50, 256), (0, -100, -60, 256)],
)
def test_raw_tile_regions_equal_tifffile_within_idct_rounding(jpeg_slide, level, x, y, size):
    import tifffile

    tiles = RawJpegTiles(jpeg_slide, level)
    region = tiles.read(x, y, size).permute(1, 2, 0).numpy().astype(int)
    with tifffile.TiffFile(jpeg_slide) as tiff:
        page = tiff.series[0].levels[level].asarray()
    expected = np.full((size, size, 3), 255, dtype=int)  # white outside the slide
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + size, page.shape[0]), min(x + size, page.shape[1])
    expected[y0 - y : y1 - y, x0 - x : x1 - x] = page[y0:y1, x0:x1]
    assert np.abs(region - expected).max() <= 2
    assert tiles.downsample == pytest.approx(4.0 if level else 1.0)
    tiles.close()


def test_abbreviated_tiles_get_the_page_tables_and_other_levels_are_refused(tmp_path, he_pixels):
    tables = b"\xff\xd8" + b"TABLES" + b"\xff\xd9"
    tile = b"\xff\xd8" + b"SCAN" + b"\xff\xd9"
    assert with_tables(tables, tile) == b"\xff\xd8TABLESSCAN\xff\xd9" and with_tables(None, tile) == tile
    zlib = write_pyramid(tmp_path / "z.tif", he_pixels[:512, :512], 0.5, (1,), compression="zlib")
    with pytest.raises(UnsupportedTilesError, match="not tiled JPEG"):
        RawJpegTiles(zlib, 0)
