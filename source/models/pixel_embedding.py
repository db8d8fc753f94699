"""ViT_patch's token embedding computed straight from a region's uint8 pixels, normalisation folded into its weights.

The reference path cuts a region into 256-px patches, converts them to float, normalises them (``x / 255``, minus the
mean, over the std: four passes over a float copy of the region) and runs the 16-px convolution of the patch
embedding. Because that convolution is linear and its kernel equals its stride, the same tokens come from one matrix
product over the region's 16-px cells with folded weights:

    conv((x / 255 - m) / s, W) + b  =  cells(x) @ (W / (255 s))  +  (b - sum(W m / s))

The cells are gathered from the uint8 pixels (one byte per value) in patch-major order, so the tokens come out already
grouped by patch and no float copy of the region is normalised or patchified.
"""

from __future__ import annotations

import torch
from torch import nn


def folded_embedding(
    proj: nn.Conv2d, mean: torch.Tensor, std: torch.Tensor, pixel_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of ``proj`` applied to raw pixels: ``(C*k*k, D)`` and the bias ``(D,)``, float32.

    Args:
        proj: the patch embedding's convolution, ``(D, C, k, k)`` with stride k.
        mean, std: the normalisation, any shape holding C values (pixels in [0, 1]).
        pixel_scale: what turns a raw pixel into [0, 1] (1/255 for uint8, 1 for float).
    """
    weight = proj.weight.float()
    channels = weight.shape[1]
    mean, std = mean.float().reshape(1, channels, 1, 1), std.float().reshape(1, channels, 1, 1)
    folded = (weight * (pixel_scale / std)).flatten(1).t()
    shift = (weight * (mean / std)).sum(dim=(1, 2, 3))
    bias = proj.bias.float() - shift if proj.bias is not None else -shift
    return folded.contiguous(), bias


def embed_region_patches(
    regions: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, patch_size: int, token_size: int
) -> torch.Tensor:
    """Tokens of every patch of ``regions`` (row-major patches, row-major tokens in each).

    Args:
        regions: ``(B, C, R, R)`` raw pixels, R a multiple of ``patch_size``, which is a multiple of ``token_size``.
        weight, bias: from :func:`folded_embedding`.
        patch_size: p, the side of ViT_patch's input (256).
        token_size: k, the side of one token's cell (16).

    Returns:
        ``(B * n * n, t * t, D)`` in the autocast dtype when autocast is on (else float32), n = R / p, t = p / k; patch
        ``b*n*n + r*n + c`` is row r, column c of region b, as :func:`source.models.hipt.patchify` orders them.
    """
    batch, channels, side, _ = regions.shape
    n, t, k = side // patch_size, patch_size // token_size, token_size
    device = regions.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    cells = regions.reshape(batch, channels, n, t, k, n, t, k).permute(0, 2, 5, 3, 6, 1, 4, 7)
    cells = cells.reshape(batch * n * n * t * t, channels * k * k).to(dtype)
    tokens = torch.addmm(bias.to(dtype), cells, weight.to(dtype))
    return tokens.reshape(batch * n * n, t * t, -1)
