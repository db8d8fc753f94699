"""Attention scores -> pixel maps: rank normalisation, patch mosaics, upsampling, shift-and-average, factorized and
blended maps.

Conventions (every map is ``(H, S, S)``: heads x pixels at the output resolution):
    rank normalisation: ``rank(v) / N`` with average ranks for ties, so scores lie in (0, 1];
    factorized map of region head j and patch head i: ``(R_j + P_i) / 2`` of the rank-normalised maps;
    blended map: ``gamma * S + (1 - gamma) * mean_{j,i} F_ji`` with S the slide-level score of the region.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata


def rank_normalise(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """Average rank / count of every element (ties share their mean rank): values in (0, 1], same shape."""
    array = np.asarray(values, dtype=np.float64)
    return (rankdata(array.ravel(), method="average") / array.size).reshape(array.shape)


def rank_normalise_maps(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    """:func:`rank_normalise` each map of ``(H, ...)`` on its own."""
    return np.stack([rank_normalise(m) for m in np.asarray(maps)])


def patch_mosaic(patch_tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """Assemble per-patch token maps into one map per head.

    Args:
        patch_tokens: ``(n*n, H, g, g)``, patch ``r*n + c`` at row r, column c of the region.
        grid: n.

    Returns:
        ``(H, n*g, n*g)``.
    """
    count, heads, side, _ = patch_tokens.shape
    if count != grid * grid:
        raise ValueError(f"{count} patch maps do not fill a {grid}x{grid} grid")
    tiles = patch_tokens.reshape(grid, grid, heads, side, side).permute(2, 0, 3, 1, 4)
    return tiles.reshape(heads, grid * side, grid * side)


def to_pixels(token_maps: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of ``(H, h, w)`` token maps to ``(H, size, size)`` (each token a block)."""
    return F.interpolate(token_maps.unsqueeze(0).float(), size=(size, size), mode="nearest").squeeze(0)


def shift_back(maps: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps of a view whose content moved by ``+shift`` px (down and right) -> maps aligned on the original.

    Returns:
        the aligned maps ``(H, S, S)`` (zero where the view did not cover the original) and the
        coverage mask ``(S, S)``.
    """
    heads, size, _ = maps.shape
    aligned = torch.zeros_like(maps)
    covered = torch.zeros(size, size, dtype=maps.dtype)
    aligned[:, : size - shift, : size - shift] = maps[:, shift:, shift:]
    covered[: size - shift, : size - shift] = 1
    return aligned, covered


def average_views(views: list[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """Average pixel maps of shifted views on the original pixel grid, each pixel over the views covering it.

    Args:
        views: ``(maps (H, S, S), shift in output pixels)``; the unshifted view (shift 0) covers every pixel.
    """
    total = torch.zeros_like(views[0][0])
    count = torch.zeros(views[0][0].shape[-2:], dtype=total.dtype)
    for maps, shift in views:
        aligned, covered = shift_back(maps, shift)
        total += aligned
        count += covered
    return total / count


def factorized(region_map: np.ndarray, patch_map: np.ndarray) -> np.ndarray:
    """Factorized map of one (region head, patch head) pair: ``(R_j + P_i) / 2`` of rank-normalised ``(S, S)`` maps."""
    return (region_map + patch_map) / 2


def blended(slide_score: float, mean_factorized: np.ndarray, gamma: float) -> np.ndarray:
    """``gamma * slide_score + (1 - gamma) * mean_factorized`` (the mean over (j, i) of the factorized maps)."""
    return gamma * slide_score + (1 - gamma) * mean_factorized
