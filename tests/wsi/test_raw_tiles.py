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
    assert with_tables(None, tile, rgb=True) == b"\xff\xd8\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00SCAN\xff\xd9"
    zlib = write_pyramid(tmp_path / "z.tif", he_pixels[:512, :512], 0.5, (1,), compression="zlib")
    with pytest.raises(UnsupportedTilesError, match="not tiled JPEG"):
        RawJpegTiles(zlib, 0)


def source_of(path, read_size, region_size, backend="openslide"):
    from source.wsi.reader import WholeSlideRegions
    from source.wsi.tiling import PyramidRead

    return WholeSlideRegions("s", PyramidRead(path, backend, 0.5, 0, read_size, read_size, region_size))


@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_regions_stay_compressed_only_where_the_device_can_decode_them(jpeg_slide, tmp_path, he_pixels, backend):
    import torch

    from source.data.regions import Region
    from source.wsi.raw_tiles import RawRegion, decode_regions

    source = source_of(jpeg_slide, 512, 512, backend)
    region = Region(700, 1300)
    raw = source.read_raw(region)
    assert isinstance(raw, RawRegion) and len(raw.streams) == 9  # 512 px from (700, 1300) cross 3 x 3 tiles of 256
    decoded = decode_regions([raw, source.read_raw(Region(0, 0))], torch.device("cpu"))
    assert decoded.shape == (2, 3, 512, 512)
    expected = source.read(region).astype(int)
    assert np.abs(decoded[0].permute(1, 2, 0).numpy().astype(int) - expected).max() <= 2
    assert source_of(jpeg_slide, 1024, 512, backend).read_raw(region) is None  # resampled reads stay on the CPU
    zlib = write_pyramid(tmp_path / "z.tif", he_pixels[:1024, :1024], 0.5, (1,), compression="zlib")
    assert source_of(zlib, 512, 512, backend).read_raw(Region(0, 0)) is None  # not JPEG


def test_a_batch_with_a_corrupt_compressed_region_fails_that_region_only(jpeg_slide):
    import torch

    from source.data.region_loader import RegionBatch
    from source.data.regions import Region
    from source.engines.extract import Extractor
    from source.engines.feature_store import FeatureStore
    from source.models.hipt import HIPTEncoder
    from source.models.vit import vit_tiny
    from source.wsi.raw_tiles import RawRegion

    source = source_of(jpeg_slide, 256, 256)
    good = source.read_raw(Region(256, 256))
    bad = RawRegion(256, [b"\xff\xd8 not a jpeg \xff\xd9"], [(0, 0, 0, 0, 256, 256)])
    encoder = HIPTEncoder(vit_tiny().eval(), None).place(torch.device("cpu"))
    extractor = Extractor(encoder, FeatureStore(jpeg_slide.parent / "out"), "local", 256, decode_on_device=True)
    batch = RegionBatch(torch.empty(0, 3, 0, 0, dtype=torch.uint8), raw=[good, bad], raw_keys=[(0, 0), (0, 1)])
    pixels, keys, failures = extractor.read.decode(batch)
    assert pixels.shape == (1, 3, 256, 256) and keys == [(0, 0)]
    assert failures[0][:2] == (0, 1) and "JPEG tiles do not decode" in failures[0][2]


def test_extraction_decoding_jpeg_on_the_device_gives_the_features_of_cpu_decoding(jpeg_slide, tmp_path, caplog):
    import torch

    from source.engines.extraction_job import run_extraction_job
    from tests.helpers import extraction_config
    from tests.wsi.conftest import write_csv

    csv = write_csv(tmp_path / "slides.csv", [{"slide_id": "he", "image_path": str(jpeg_slide)}])
    tiny = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None}
    features = {}
    for decode in ("cpu", "device"):
        values = {"output_dir": str(tmp_path), "run_id": decode, "wsi_csv": str(csv), "region_size": 512}
        cfg = extraction_config(**values, num_workers=1, batch_size=2, jpeg_decode=decode, **tiny)
        assert run_extraction_job(cfg) == 0
        features[decode] = torch.load(tmp_path / "feature_extraction" / decode / "features" / "slide" / "he.pt")
        assert ("JPEG tiles in batches on cpu" in caplog.text) == (decode == "device")
    assert features["cpu"].shape == features["device"].shape and len(features["cpu"]) >= 4
    cosine = torch.nn.functional.cosine_similarity(features["cpu"], features["device"])
    assert cosine.min() > 0.999


def test_aperio_tiles_stored_as_rgb_jpeg_decode_as_tifffile_does(demo_slide):
    import tifffile

    tiles = RawJpegTiles(demo_slide, 0)
    assert tiles.rgb and tiles.decodes_like_tifffile()  # without the Adobe segment the colours are off by up to 229
    region = tiles.read(512, 768, 1024).permute(1, 2, 0).numpy().astype(int)
    with tifffile.TiffFile(demo_slide) as tiff:
        page = tiff.series[0].levels[0].asarray()[768 : 768 + 1024, 512 : 512 + 1024].astype(int)
    assert np.abs(region - page).max() <= 2
    tiles.close()
