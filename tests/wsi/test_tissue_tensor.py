"""The tensor version of hs2p's HSV tissue rule gives OpenCV's fractions exactly (it runs on the GPU in extraction)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from source.wsi.tissue import tissue_from_pixels, tissue_mask
from source.wsi.tissue_tensor import hsv_tissue_mask, tissue_fractions


def test_the_hsv_rule_equals_opencv_on_every_8_bit_colour():
    colours = np.arange(2**24, dtype=np.uint32)
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=-1).astype(np.uint8)
    for chunk in np.split(rgb.reshape(256, 65536, 3), 16):  # 16 chunks of 16 x 65536 colours
        expected = tissue_mask(chunk)
        got = hsv_tissue_mask(torch.from_numpy(chunk).permute(2, 0, 1)[None])[0].numpy()
        assert np.array_equal(got, expected)
    assert 0.1 < tissue_mask(rgb.reshape(4096, 4096, 3)).mean() < 0.9  # both classes are exercised


@pytest.mark.parametrize("grid", [2, 4])
def test_region_fractions_equal_opencv_on_real_h_and_e_and_on_noise(he_pixels, grid):
    side = 256 * grid
    real = [he_pixels[y : y + side, x : x + side] for y, x in ((0, 0), (700, 900), (2944 - side, 2208 - side))]
    rng = np.random.default_rng(grid)
    noise = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8)]  # block means tie at .5 many times
    regions = np.stack(real + noise)
    expected = np.stack([tissue_from_pixels(region, grid) for region in regions])
    got = tissue_fractions(torch.from_numpy(regions).permute(0, 3, 1, 2), grid)
    assert got.shape == (4, grid * grid) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), expected)
    assert 0 < expected[:3].mean() < 1  # the real regions hold tissue and glass


def test_regions_that_do_not_shrink_by_a_whole_factor_are_refused():
    with pytest.raises(ValueError, match="do not shrink by a whole factor to 16 px"):
        tissue_fractions(torch.zeros(1, 3, 100, 100, dtype=torch.uint8), 2)
