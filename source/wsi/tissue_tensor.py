"""hs2p's HSV tissue rule on tensors, wherever the pixels are: a GPU computes it without reading the region back.

:func:`source.wsi.tissue.tissue_from_pixels` does the same with OpenCV on the host, one region at a time. This module
reproduces OpenCV's integer arithmetic exactly (tested), so that both give the same fractions:

- the region is shrunk to :data:`~source.wsi.tissue.MASK_PIXELS_PER_PATCH` pixels per patch side by averaging whole
  blocks (OpenCV's ``INTER_AREA`` for an integer factor), rounded half to even;
- OpenCV's 8-bit RGB -> HSV: V = max, S = diff * round(255 * 2^12 / V) >> 12, H from round(180 * 2^12 / (6 diff)),
  each rounded at 2^11 and shifted (floor) by 12;
- a pixel is tissue when hue, saturation and value lie in ``HSV_LOW`` .. ``HSV_HIGH`` of :mod:`source.wsi.tissue`.
"""

from __future__ import annotations

import torch

from source.wsi.tissue import HSV_HIGH, HSV_LOW, MASK_PIXELS_PER_PATCH

SHIFT = 12
"""OpenCV's fixed-point shift of the 8-bit RGB -> HSV conversion."""


def _division_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's ``round(255 * 2^12 / v)`` and ``round(180 * 2^12 / (6 d))`` for 0..255 (0 at 0), int64."""
    values = torch.arange(256, dtype=torch.float64, device=device)
    saturation = torch.where(values > 0, torch.round((255 << SHIFT) / values.clamp(min=1)), 0.0)
    hue = torch.where(values > 0, torch.round((180 << SHIFT) / (6 * values.clamp(min=1))), 0.0)
    return saturation.long(), hue.long()


def hsv_tissue_mask(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB uint8 (any device) -> ``(B, H, W)`` bool: hs2p's HSV rule, as OpenCV computes it."""
    r, g, b = rgb.long().unbind(1)
    value = torch.maximum(torch.maximum(r, g), b)
    diff = value - torch.minimum(torch.minimum(r, g), b)
    saturation_table, hue_table = _division_tables(rgb.device)
    half = 1 << (SHIFT - 1)
    saturation = torch.div(diff * saturation_table[value] + half, 1 << SHIFT, rounding_mode="floor")
    hue = torch.where(value == r, g - b, torch.where(value == g, b - r + 2 * diff, r - g + 4 * diff))
    hue = torch.div(hue * hue_table[diff] + half, 1 << SHIFT, rounding_mode="floor")
    hue = torch.where(hue < 0, hue + 180, hue)
    low, high = HSV_LOW, HSV_HIGH
    return (
        (hue >= low[0])
        & (hue <= high[0])
        & (saturation >= low[1])
        & (saturation <= high[1])
        & (value >= low[2])
        & (value <= high[2])
    )


def tissue_fractions(regions: torch.Tensor, grid: int) -> torch.Tensor:
    """Tissue fraction of each patch of ``regions`` by hs2p's HSV rule, on their device.

    Args:
        regions: ``(B, 3, R, R)`` uint8 RGB, R a multiple of ``grid * MASK_PIXELS_PER_PATCH``.
        grid: patches per region side (n).

    Returns:
        ``(B, n*n)`` float32, row-major like the patches; equal to
        :func:`source.wsi.tissue.tissue_from_pixels` of each region.
    """
    side = grid * MASK_PIXELS_PER_PATCH
    if regions.shape[-1] % side or regions.shape[-2] != regions.shape[-1]:
        raise ValueError(f"regions of {tuple(regions.shape[-2:])} px do not shrink by a whole factor to {side} px")
    factor = regions.shape[-1] // side
    blocks = regions.reshape(regions.shape[0], 3, side, factor, side, factor)
    sums = blocks.sum(dim=(3, 5), dtype=torch.int32)  # exact, and no float copy of the region
    small = torch.round(sums.double() / (factor * factor)).to(torch.uint8)  # half to even, like OpenCV's cvRound
    mask = hsv_tissue_mask(small).float()
    cells = mask.reshape(-1, grid, MASK_PIXELS_PER_PATCH, grid, MASK_PIXELS_PER_PATCH)
    return cells.mean(dim=(2, 4)).reshape(-1, grid * grid)
