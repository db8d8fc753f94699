"""Tiling with hs2p and reading regions from the pyramid, checked against OpenSlide read directly."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import openslide
import pytest

from source.data.regions import Region
from source.wsi.preview import preview_image
from source.wsi.reader import WholeSlideRegions, choose_reader
from source.wsi.settings import TilingSettings
from source.wsi.slide_table import WholeSlide
from source.wsi.tiling import pyramid_read_of, tile_whole_slide
from tests.wsi.slides import write_pyramid

SIZE = 512  # region side at 0.5 um/px in these tests


def on_white(image) -> np.ndarray:
    """An OpenSlide RGBA read as RGB, with the transparent pixels outside the slide made white."""
    rgba = np.array(image)
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255
    return rgb


def tiled(path, **settings):
    slide = WholeSlide("s", path)
    tiling = TilingSettings(**settings)
    result = tile_whole_slide(slide, tiling, SIZE, 256)
    return result, pyramid_read_of(result, slide, tiling, SIZE)


@pytest.mark.parametrize(
    "name, level, read_size, footprint",
    [("he 0.5 é.tif", 0, 512, 512), ("he_025_2x.tif", 1, 512, 1024), ("he_025_no2x.tif", 0, 1024, 1024)],
)
def test_geometry_follows_the_pyramid(slides_dir, name, level, read_size, footprint):
    result, read = tiled(slides_dir / name)
    assert (read.read_level, read.read_size, read.tile_size_lv0) == (level, read_size, footprint)
    assert result.num_tiles > 0
    width, height = openslide.OpenSlide(str(slides_dir / name)).dimensions
    xs, ys = np.asarray(result.x), np.asarray(result.y)
    assert ((xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)).all()
    assert list(zip(xs, ys, strict=True)) == sorted(zip(xs, ys, strict=True)), "regions are in x-then-y order"
    assert (np.asarray(result.tissue_fractions) >= 0.1).all()


def test_physical_area_sets_the_count(slides_dir):
    """The same pixels labelled 0.25 um/px cover a quarter of the tissue area: fewer 0.5 um/px regions."""
    at_half, _ = tiled(slides_dir / "he 0.5 é.tif")
    at_quarter, _ = tiled(slides_dir / "he_025_2x.tif")
    assert at_quarter.num_tiles < at_half.num_tiles
    assert tiled(slides_dir / "he 0.5 é.tif", min_tissue_fraction=0.5)[0].num_tiles < at_half.num_tiles


def test_region_equals_openslide_at_a_matching_level(slides_dir):
    for name in ("he 0.5 é.tif", "he_025_2x.tif"):
        result, read = tiled(slides_dir / name)
        regions = WholeSlideRegions("s", read)
        direct = openslide.OpenSlide(str(slides_dir / name))
        step = round(direct.level_downsamples[read.read_level])
        for x, y in zip(result.x, result.y, strict=True):
            # the corner snaps to the read level's pixel grid (OpenSlide itself would interpolate between pixels)
            corner = (int(x) // step * step, int(y) // step * step)
            expected = on_white(direct.read_region(corner, read.read_level, (SIZE, SIZE)))
            np.testing.assert_array_equal(regions.read(Region(int(x), int(y))), expected)


def test_region_is_area_downsampled_when_no_level_fits(slides_dir):
    result, read = tiled(slides_dir / "he_025_no2x.tif")
    regions = WholeSlideRegions("s", read)
    direct = openslide.OpenSlide(str(slides_dir / "he_025_no2x.tif"))
    x, y = int(result.x[0]), int(result.y[0])
    big = on_white(direct.read_region((x, y), 0, (1024, 1024))).astype(np.float64)
    block_mean = big.reshape(SIZE, 2, SIZE, 2, 3).mean(axis=(1, 3))  # area averaging, computed independently
    got = regions.read(Region(x, y))
    assert got.shape == (SIZE, SIZE, 3) and got.dtype == np.uint8
    assert np.abs(got - block_mean).max() <= 1.0


def test_pixels_outside_the_slide_are_white(slides_dir):
    _, read = tiled(slides_dir / "he 0.5 é.tif")
    width, height = openslide.OpenSlide(str(slides_dir / "he 0.5 é.tif")).dimensions
    corner = WholeSlideRegions("s", read).read(Region(width - 100, height - 200))
    assert (corner[:, 100:] == 255).all() and (corner[200:, :] == 255).all()
    assert (corner[:200, :100] != 255).any()


def test_mask_path_replaces_segmentation(slides_dir, he_pixels, tmp_path):
    mask = np.zeros(he_pixels.shape[:2], np.uint8)
    mask[:, : he_pixels.shape[1] // 2] = 1
    mask_path = write_pyramid(tmp_path / "mask.tif", np.ascontiguousarray(mask[::8, ::8]), None, (1,))
    slide = WholeSlide("s", slides_dir / "he 0.5 é.tif", mask_path=mask_path)
    result = tile_whole_slide(slide, TilingSettings(), SIZE, 256)
    assert result.num_tiles > 0
    assert (np.asarray(result.x) < he_pixels.shape[1] // 2).all()


def test_reader_reopens_after_close_and_pickles_closed(slides_dir):
    import pickle

    result, read = tiled(slides_dir / "he 0.5 é.tif")
    regions = WholeSlideRegions("s", read)
    first = regions.read(Region(int(result.x[0]), int(result.y[0])))
    copy = pickle.loads(pickle.dumps(regions))
    assert copy._slide is None and regions._slide is not None
    regions.close()
    np.testing.assert_array_equal(regions.read(Region(int(result.x[0]), int(result.y[0]))), first)


def test_preview_draws_numbered_squares_and_contours():
    thumbnail = np.full((100, 200, 3), 255, np.uint8)
    contour = np.array([[[100, 100]], [[1800, 100]], [[1800, 900]], [[100, 900]]], np.int32)
    image = preview_image(thumbnail, 2000, [0, 1000], [0, 0], 500, [contour])
    assert image.shape == thumbnail.shape and (thumbnail == 255).all(), "the thumbnail is not modified"
    blue = (image[..., 2] > 150) & (image[..., 0] < 100)
    green = (image[..., 1] > 120) & (image[..., 0] < 100) & (image[..., 2] < 100)
    assert blue[0:50, 0:50].any() and blue[0:50, 100:150].any() and not blue[60:, :].any()
    assert green[10, 10:180].any() and green[90, 10:180].any()
    dark = image.sum(axis=-1) < 150
    assert dark[0:25, 0:25].any() and dark[0:25, 100:125].any(), "regions are numbered"
    assert cv2.countNonZero(dark[:, 160:].astype(np.uint8)) == 0


@pytest.mark.parametrize("name", ["he 0.5 é.tif", "he_025_2x.tif", "he_025_no2x.tif"])
def test_auto_reader_is_tifffile_on_tiffs_and_reads_the_same_pixels(slides_dir, name):
    result, read = tiled(slides_dir / name)
    backend = choose_reader("auto", "openslide", read.image_path, read.spacing_at_level_0, result)
    assert backend == "tifffile"
    assert choose_reader("openslide", "openslide", read.image_path, read.spacing_at_level_0, result) == "openslide"
    slow, fast = WholeSlideRegions("s", read), WholeSlideRegions("s", replace(read, backend=backend))
    for x, y in zip(result.x, result.y, strict=True):
        np.testing.assert_array_equal(fast.read(Region(int(x), int(y))), slow.read(Region(int(x), int(y))))


def test_auto_reader_reads_the_demo_svs_like_openslide(demo_slide):
    result, read = tiled(demo_slide)
    assert choose_reader("auto", "openslide", read.image_path, read.spacing_at_level_0, result) == "tifffile"
    region = Region(int(result.x[0]), int(result.y[0]))
    np.testing.assert_array_equal(
        WholeSlideRegions("s", replace(read, backend="tifffile")).read(region),
        WholeSlideRegions("s", read).read(region),
    )


def test_auto_reader_keeps_the_tiling_backend_when_the_pyramids_differ(slides_dir):
    result, read = tiled(slides_dir / "he 0.5 é.tif")
    result.tiles.level_downsamples = [1.0, 2.0]  # as if the tiling backend saw another pyramid
    result.tiles.read_level = 1
    assert choose_reader("auto", "openslide", read.image_path, read.spacing_at_level_0, result) == "openslide"
    assert choose_reader("auto", "openslide", slides_dir / "x.ndpi", 0.5, result) == "openslide"
