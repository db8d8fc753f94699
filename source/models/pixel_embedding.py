"""ViT_patch's token embedding computed straight from a region's uint8 pixels, normalisation folded into its weights.

The reference path cuts a region into 256-px patches, converts them to float, normalises them (``x / 255``, minus the
mean, over the std: four passes over a float copy of the region) and runs the 16-px convolution of the patch
embedding. Because that convolution is linear and its kernel equals its stride, the same tokens come from one matrix
product over the region's 16-px cells with folded weights:

    conv((x / 255 - m) / s, W) + b  =  cells(v) @ (W h / (255 s))  +  (b + sum(W (c / 255 - m) / s)),
    v = (x - c) / h,  c = h = 128

The cells are gathered from the uint8 pixels (one byte per value) in patch-major order, so the tokens come out already
grouped by patch and no float copy of the region is normalised or patchified. Centring the pixels keeps them exact in
bf16 / fp16 and the folded bias small.
"""

from __future__ import annotations

import torch
from torch import nn


def input_coding(dtype: torch.dtype) -> tuple[float, float, float]:
    """How stored pixel values of ``dtype`` are centred before the matrix product: ``(centre, half_range, to_unit)``.

    The product sees ``v = (raw - centre) / half_range`` in [-1, 1] and the pixel in [0, 1] is
    ``(centre + half_range * v) * to_unit``. For uint8 (``(128, 128, 1/255)``) ``v`` is exact in bf16 and fp16 and the
    folded weights stay in their normal range, so the folded path is at least as precise as the reference one under
    autocast; float pixels in [0, 1] use ``(0.5, 0.5, 1)``.
    """
    return (128.0, 128.0, 1 / 255) if dtype == torch.uint8 else (0.5, 0.5, 1.0)


def folded_embedding(
    proj: nn.Conv2d, mean: torch.Tensor, std: torch.Tensor, coding: tuple[float, float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of ``proj`` applied to centred raw pixels: ``(C*k*k, D)`` and the bias ``(D,)``, float32.

    Args:
        proj: the patch embedding's convolution, ``(D, C, k, k)`` with stride k.
        mean, std: the normalisation, any shape holding C values (pixels in [0, 1]).
        coding: :func:`input_coding` of the pixels' dtype.
    """
    centre, half_range, to_unit = coding
    weight = proj.weight.double()  # folded in float64, rounded once
    channels = weight.shape[1]
    mean, std = mean.double().reshape(1, channels, 1, 1), std.double().reshape(1, channels, 1, 1)
    folded = (weight * (half_range * to_unit / std)).flatten(1).t()
    shift = (weight * ((centre * to_unit - mean) / std)).sum(dim=(1, 2, 3))
    bias = shift + proj.bias.double() if proj.bias is not None else shift
    return folded.float().contiguous(), bias.float()


def embed_region_patches(
    regions: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, patch_size: int, token_size: int
) -> torch.Tensor:
    """Tokens of every patch of ``regions`` (row-major patches, row-major tokens in each).

    Args:
        regions: ``(B, C, R, R)`` raw pixels (uint8, or float in [0, 1]), R a multiple of ``patch_size``, which is a
            multiple of ``token_size``.
        weight, bias: from :func:`folded_embedding` with the :func:`input_coding` of ``regions.dtype``.
        patch_size: p, the side of ViT_patch's input (256).
        token_size: k, the side of one token's cell (16).

    Returns:
        ``(B * n * n, t * t, D)`` in the autocast dtype when autocast is on (else float32), n = R / p, t = p / k; patch
        ``b*n*n + r*n + c`` is row r, column c of region b, as :func:`source.models.hipt.patchify` orders them.

    Raises:
        ValueError: regions that are not square multiples of ``patch_size``, or a ``patch_size`` that is not a
            multiple of ``token_size``.
    """
    batch, channels, height, width = regions.shape
    if height != width or height % patch_size or patch_size % token_size:
        raise ValueError(
            f"regions of {height}x{width} px do not tile into {patch_size}-px patches of {token_size}-px tokens"
        )
    n, t, k = height // patch_size, patch_size // token_size, token_size
    device = regions.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    centre, half_range, _ = input_coding(regions.dtype)
    cells = regions.reshape(batch, channels, n, t, k, n, t, k).permute(0, 2, 5, 3, 6, 1, 4, 7)
    cells = cells.reshape(batch * n * n * t * t, channels * k * k).to(dtype).sub_(centre).div_(half_range)
    tokens = torch.addmm(bias.to(dtype), cells, weight.to(dtype))
    return tokens.reshape(batch * n * n, t * t, -1)
