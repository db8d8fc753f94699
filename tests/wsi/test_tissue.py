"""Tissue fractions of every patch, recorded by extraction, line up with the slide; background patches masked in
ViT_region change only the regions that have them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from source.engines.extraction_job import run_extraction_job
from source.wsi.tissue import tissue_from_contours, tissue_from_pixels
from tests.helpers import extraction_config
from tests.wsi.conftest import write_csv
from tests.wsi.slides import write_pyramid

PINK = (200, 120, 170)  # inside hs2p's HSV tissue range (hue 161 of 180, saturation 102, value 200)
TISSUE = (512, 0, 1536, 1280)  # x0, y0, x1, y1 in level-0 pixels
TINY = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None, "num_workers": 0}


def expected_fractions(x: int, y: int, size: int = 1024, grid: int = 4) -> np.ndarray:
    """The share of each patch of the region at (x, y) that the tissue rectangle covers, row-major."""
    step = size // grid
    x0, y0, x1, y1 = TISSUE
    result = []
    for row in range(grid):
        for col in range(grid):
            left, top = x + col * step, y + row * step
            width = max(0, min(left + step, x1) - max(left, x0))
            height = max(0, min(top + step, y1) - max(top, y0))
            result.append(width * height / step**2)
    return np.array(result)


@pytest.fixture(scope="module")
def known_slide(tmp_path_factory):
    """A 0.5 um/px slide, white but for a pink rectangle of known position, and its extraction (1024-px regions)."""
    root = tmp_path_factory.mktemp("tissue")
    pixels = np.full((2048, 2048, 3), 255, dtype=np.uint8)
    x0, y0, x1, y1 = TISSUE
    pixels[y0:y1, x0:x1] = PINK
    slide = write_pyramid(root / "known.tif", pixels, 0.5, (1, 4))
    csv = write_csv(root / "slides.csv", [{"slide_id": "known", "image_path": str(slide)}])
    runs = {}
    for name, mask in (("plain", False), ("masked", True)):
        cfg = extraction_config(
            output_dir=str(root), run_id=name, wsi_csv=str(csv), region_size=1024, mask_background=mask, **TINY
        )
        cfg.tiling.seg_downsample = 4  # contours on the 1/4 level: their edges are within 4 level-0 px
        assert run_extraction_job(cfg) == 0
        runs[name] = root / "feature_extraction" / name
    return root, csv, runs


def test_tissue_fractions_line_up_with_the_slide(known_slide):
    root, csv, runs = known_slide
    regions = pd.read_csv(runs["plain"] / "regions.csv")
    tissue = torch.load(runs["plain"] / "features" / "tissue" / "known.pt", weights_only=True)
    assert tissue.shape == (len(regions), 16) and len(regions) >= 2
    for row, region in enumerate(regions.itertuples()):  # hs2p smooths its mask: edges move by up to ~32 level-0 px
        np.testing.assert_allclose(tissue[row].numpy(), expected_fractions(region.x, region.y), atol=0.15)
    reused = extraction_config(  # coordinates given: no contours, the region pixels are segmented instead
        output_dir=str(root), run_id="reused", wsi_csv=str(csv), region_size=1024, **TINY
    )
    reused.coordinates_dir, reused.tiling.seg_downsample = str(runs["plain"] / "coordinates"), 4
    assert run_extraction_job(reused) == 0
    from_pixels = torch.load(root / "feature_extraction" / "reused" / "features" / "tissue" / "known.pt")
    for row, region in enumerate(regions.itertuples()):  # the pixels' own segmentation is exact here
        np.testing.assert_allclose(from_pixels[row].numpy(), expected_fractions(region.x, region.y), atol=0.02)


def test_masking_background_changes_only_the_regions_that_have_some(known_slide):
    _, _, runs = known_slide
    plain = torch.load(runs["plain"] / "features" / "slide" / "known.pt", weights_only=True)
    masked = torch.load(runs["masked"] / "features" / "slide" / "known.pt", weights_only=True)
    tissue = torch.load(runs["plain"] / "features" / "tissue" / "known.pt", weights_only=True)
    all_tissue = (tissue >= 0.1).all(dim=1)
    assert all_tissue.any() and (~all_tissue).any()
    assert torch.equal(masked[all_tissue], plain[all_tissue])  # bit-identical where every patch is tissue
    assert not torch.allclose(masked[~all_tissue], plain[~all_tissue])


def test_fractions_from_polygons_and_pixels_agree_on_a_drawn_region():
    region = np.full((256, 256, 3), 255, dtype=np.uint8)
    region[:, :96] = PINK  # the left 96 px of 4 x 4 patches of 64 px: columns 0 (full) and 1 (half)
    from_pixels = tissue_from_pixels(region, 4).reshape(4, 4)
    polygon = np.array([[1000, 2000], [1096, 2000], [1096, 2256], [1000, 2256]])
    from_polygon = tissue_from_contours([polygon], [[]], (1000, 2000), 256, 4).reshape(4, 4)
    for fractions in (from_pixels, from_polygon):
        np.testing.assert_allclose(fractions[:, 0], 1.0)
        np.testing.assert_allclose(fractions[:, 1], 0.5, atol=0.07)
        np.testing.assert_allclose(fractions[:, 2:], 0.0)
    hole = np.array([[1000, 2000], [1064, 2000], [1064, 2064], [1000, 2064]])
    with_hole = tissue_from_contours([polygon], [[hole]], (1000, 2000), 256, 4).reshape(4, 4)
    assert with_hole[0, 0] == pytest.approx(0.0, abs=0.05) and with_hole[1, 0] == pytest.approx(1.0, abs=0.05)


def test_heatmap_canvases_colour_tissue_only(known_slide, tmp_path):
    """Glass keeps the slide's own colour (white here) on the canvases; without restrict_to_tissue it is coloured."""
    from omegaconf import OmegaConf
    from PIL import Image

    from source.config.heatmaps import HeatmapConfig
    from source.engines.heatmap_job import run_heatmap_job

    _, _, runs = known_slide
    white = {}
    for restrict in (True, False):
        values = {"vit_patch_arch": "vit_tiny", "patch_weights": None, "region_weights": None, "downsample": 8}
        values |= {"extraction_run": str(runs["plain"]), "output_dir": str(tmp_path), "run_id": str(restrict)}
        cfg = OmegaConf.merge(OmegaConf.structured(HeatmapConfig), values | {"restrict_to_tissue": restrict})
        assert run_heatmap_job(cfg) == 0
        canvas = np.asarray(Image.open(tmp_path / "heatmaps" / str(restrict) / "known" / "slide" / "region_mean.png"))
        white[restrict] = int((canvas[..., :3] == 255).all(axis=-1).sum())
    # region 2 covers 1024 x 1024 level-0 px of which 768 rows are glass: 128 x 96 canvas px stay white
    assert white[True] - white[False] >= 128 * 96 * 0.9


def test_heatmaps_mask_background_patches_as_extraction_does():
    """With mask_background, ViT_region gives background patches no attention; an all-tissue region is unchanged."""
    from source.heatmaps.attention import AttentionReader
    from source.models.factory import build_hipt_encoder
    from source.models.settings import EncoderSettings

    torch.manual_seed(0)
    encoder = build_hipt_encoder(EncoderSettings(patch_arch="vit_tiny", patch_size=64, warn_random=False))
    plain, masked = AttentionReader(encoder), AttentionReader(encoder, mask_background=True, tissue_threshold=0.5)
    region = np.full((256, 256, 3), 255, dtype=np.uint8)
    region[:, :128] = PINK  # columns 0 and 1 of 4 x 4 patches of 64 px are tissue, 2 and 3 glass
    pixels = torch.from_numpy(region).permute(2, 0, 1).contiguous()
    attention = masked.region(pixels).region  # (heads, 4, 4)
    assert (attention[:, :, 2:] == 0).all() and (attention[:, :, :2] > 0).all()
    assert (plain.region(pixels).region[:, :, 2:] > 0).all()
    tissue_only = torch.from_numpy(np.ascontiguousarray(np.full((256, 256, 3), PINK, dtype=np.uint8))).permute(2, 0, 1)
    torch.testing.assert_close(masked.region(tissue_only).global_, plain.region(tissue_only).global_, rtol=0, atol=0)
