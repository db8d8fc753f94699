"""Read the last-block CLS attention of ViT_patch and ViT_region and turn it into pixel maps of a region.

Token level: ViT_patch gives, for every 256-px patch, its CLS attention over its g x g tokens (16 x 16
of 16 px); ViT_region gives the CLS attention over the region's n x n patches. Pixel level: token maps
upsampled (each token a block) to the output size S = R / downscale, optionally averaged with views of
the region shifted by half a token (``granular``), then rank-normalised per head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from source.heatmaps.scores import average_views, patch_mosaic, rank_normalise_maps, to_pixels
from source.models.accelerator import autocast
from source.models.hipt import HIPTEncoder, features_to_grid, patchify
from source.wsi.tissue import tissue_from_pixels


def cls_attention(weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """CLS row of attention weights without the CLS column: ``(B, H, 1+N, 1+N)`` -> ``(B, H, h, w)``."""
    return weights[:, :, 0, 1:].reshape(weights.shape[0], weights.shape[1], *grid)


def shift_pixels(pixels: torch.Tensor, shift: int) -> torch.Tensor:
    """Move the content of ``(3, S, S)`` uint8 pixels by ``shift`` px down and right, padding with white."""
    if shift == 0:
        return pixels
    return F.pad(pixels, (shift, 0, shift, 0), value=255)[:, : pixels.shape[1], : pixels.shape[2]]


@dataclass
class TokenAttention:
    """Token-level attention of one region (one view).

    Attributes:
        patch: ``(n*n, Hp, g, g)`` CLS attention of each patch over its tokens (patch ``r*n + c``).
        region: ``(Hr, n, n)`` CLS attention of ViT_region over the patches; None if not computed.
        local: ``(n*n, 384)`` patch features.
        global_: ``(192,)`` region feature; None if not computed.
    """

    patch: torch.Tensor
    region: Optional[torch.Tensor]
    local: torch.Tensor
    global_: Optional[torch.Tensor]


class AttentionReader:
    """Attention of the encoders of a :class:`HIPTEncoder` (same weights and normalisation as extraction).

    Args:
        mask_background: mask the patches whose tissue fraction (hs2p's HSV rule on the region's pixels) is below
            ``tissue_threshold`` as ViT_region keys, as extraction's ``mask_background`` does: they get no attention.
    """

    def __init__(self, encoder: HIPTEncoder, mask_background: bool = False, tissue_threshold: float = 0.1) -> None:
        self.encoder = encoder.eval()
        self.mask_background = mask_background
        self.tissue_threshold = tissue_threshold

    @torch.inference_mode()
    def patches(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: ``(P, 3, p, p)`` uint8. Returns CLS features ``(P, D)`` and attention ``(P, Hp, g, g)``."""
        encoder, vit = self.encoder, self.encoder.vit_patch
        tokens = vit.token_grid(pixels.shape[-1])
        features, maps = [], []
        for start in range(0, len(pixels), encoder.patch_batch_size):
            chunk = encoder.normalize(pixels[start : start + encoder.patch_batch_size].to(encoder.patch_device))
            with autocast(encoder.precision, encoder.patch_device):
                cls, weights = vit.forward_with_attention(chunk)
            features.append(cls.float().cpu())
            maps.append(cls_attention(weights.float(), (tokens, tokens)).cpu())
        return torch.cat(features), torch.cat(maps)

    @torch.inference_mode()
    def region(self, pixels: torch.Tensor, with_region: bool = True) -> TokenAttention:
        """Args: ``(3, R, R)`` uint8. Returns the token attention of both encoders (ViT_region if asked)."""
        patches = patchify(pixels.unsqueeze(0), self.encoder.patch_size)
        local, patch_attention = self.patches(patches)
        region_attention = global_ = None
        vit_region = self.encoder.vit_region
        if with_region and vit_region is not None:
            grid = features_to_grid(local.unsqueeze(0)).to(self.encoder.region_device)
            token_mask = None
            if self.mask_background:
                tissue = tissue_from_pixels(pixels.permute(1, 2, 0).cpu().numpy(), grid.shape[-1])
                token_mask = torch.from_numpy(tissue >= self.tissue_threshold).unsqueeze(0).to(grid.device)
            with autocast(self.encoder.precision, self.encoder.region_device):
                global_, weights = vit_region.forward_with_attention(grid, token_mask)
            side = grid.shape[-1]
            region_attention, global_ = cls_attention(weights.float(), (side, side))[0].cpu(), global_[0].float().cpu()
        return TokenAttention(patch_attention, region_attention, local, global_)


@dataclass
class RegionMaps:
    """Pixel maps of one region at the output size S, rank-normalised per head, and its unshifted tokens.

    Attributes:
        patch: ``(Hp, S, S)`` patch-level map (the mosaic of the n*n patch maps).
        region: ``(Hr, S, S)`` region-level map; None without ViT_region.
        tokens: the unshifted :class:`TokenAttention` (for tables and slide-level attention).
    """

    patch: np.ndarray
    region: Optional[np.ndarray]
    tokens: TokenAttention


def select_heads(maps: torch.Tensor, heads: Optional[Sequence[int]]) -> torch.Tensor:
    """Keep the ``heads`` (all when None) of ``(H, ...)`` maps; an index out of range is an error."""
    if heads is None:
        return maps
    bad = [h for h in heads if not 0 <= h < maps.shape[0]]
    if bad:
        raise ValueError(f"head index {bad} does not exist: the model has heads 0..{maps.shape[0] - 1}")
    return maps[list(heads)]


def region_maps(
    reader: AttentionReader,
    pixels: torch.Tensor,
    size: int,
    granular: bool = False,
    patch_heads: Optional[Sequence[int]] = None,
    region_heads: Optional[Sequence[int]] = None,
) -> RegionMaps:
    """Patch- and region-level maps of a region.

    Args:
        reader: the encoders.
        pixels: ``(3, R, R)`` uint8.
        size: output side S (R must be a multiple of S).
        granular: also read views shifted by half a token (8 px for patch maps, 128 px for region maps
            of 256-px patches) and average them with the unshifted view on the original pixels.
        patch_heads, region_heads: heads to keep (all when None).
    """
    side = pixels.shape[-1]
    if side % size:
        raise ValueError(
            f"region of {side} px cannot be shown at {size} px (region_size must be a multiple of the output size)"
        )
    scale = side // size
    base = reader.region(pixels)
    grid = math.isqrt(base.patch.shape[0])
    patch_views = [(to_pixels(patch_mosaic(base.patch, grid), size), 0)]
    region_views = [(to_pixels(base.region, size), 0)] if base.region is not None else []
    if granular:
        patch_shift = size // (grid * base.patch.shape[-1]) // 2  # half a ViT_patch token, output pixels
        if patch_shift:
            view = reader.region(shift_pixels(pixels, patch_shift * scale), with_region=False)
            patch_views.append((to_pixels(patch_mosaic(view.patch, grid), size), patch_shift))
        region_shift = size // grid // 2  # half a ViT_region token (a 256-px patch)
        if region_shift and region_views:
            view = reader.region(shift_pixels(pixels, region_shift * scale))
            region_views.append((to_pixels(view.region, size), region_shift))
    patch = rank_normalise_maps(select_heads(average_views(patch_views), patch_heads))
    region = rank_normalise_maps(select_heads(average_views(region_views), region_heads)) if region_views else None
    return RegionMaps(patch, region, base)


def patch_maps(
    reader: AttentionReader, pixels: torch.Tensor, granular: bool = False, heads: Optional[Sequence[int]] = None
) -> np.ndarray:
    """Maps of one patch image ``(3, p, p)`` at full resolution: ``(Hp, p, p)``, rank-normalised per head."""
    size = pixels.shape[-1]
    _, attention = reader.patches(pixels.unsqueeze(0))
    views = [(to_pixels(attention[0], size), 0)]
    shift = size // attention.shape[-1] // 2
    if granular and shift:
        _, shifted = reader.patches(shift_pixels(pixels, shift).unsqueeze(0))
        views.append((to_pixels(shifted[0], size), shift))
    return rank_normalise_maps(select_heads(average_views(views), heads))
