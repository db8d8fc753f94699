"""Tissue stage: the tissue fraction of every patch of a batch's regions, ``(b, n*n)`` float32.

From the tiling's contours where the slide has them (on the host), else from the pixels by hs2p's HSV rule: on a GPU
with :func:`~source.wsi.tissue_tensor.tissue_fractions`, on the device, which needs no read-back; on a CPU with
OpenCV. Fractions known on the host stay there, so that an all-tissue mask is recognised without a wait.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from source.data.slides import SlidePlan
from source.wsi.tissue import tissue_from_pixels
from source.wsi.tissue_tensor import tissue_fractions


class TissueMeter:
    """Tissue fractions of regions cut into a ``grid`` x ``grid`` of patches."""

    def __init__(self, grid: int) -> None:
        self.grid = grid

    def measure(
        self, keys: Sequence[tuple[int, int]], pending: Sequence[SlidePlan], pixels: torch.Tensor
    ) -> torch.Tensor:
        """``(b, n*n)`` fractions of the regions ``keys`` ``(slide, region)`` of ``pending``, whose pixels are
        ``(b, 3, R, R)``: on the pixels' device when it is a GPU and some slide has no contours, else on the host."""
        if pixels.device.type == "cuda" and any(pending[slide].tissue is None for slide, _ in keys):
            return self.on_device(keys, pending, pixels)
        return torch.stack([self.on_host(pending[slide], region, pixels[i]) for i, (slide, region) in enumerate(keys)])

    def on_device(
        self, keys: Sequence[tuple[int, int]], pending: Sequence[SlidePlan], pixels: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`measure` on the pixels' device: contour fractions copied there, the others measured there."""
        measured = [i for i, (slide, _) in enumerate(keys) if pending[slide].tissue is None]
        known = [i for i, (slide, _) in enumerate(keys) if pending[slide].tissue is not None]
        tissue = torch.empty(len(keys), self.grid * self.grid, device=pixels.device)
        if known:
            rows = [pending[keys[i][0]].tissue[keys[i][1]] for i in known]  # type: ignore[index]
            tissue[known] = torch.from_numpy(np.stack(rows).astype(np.float32)).to(pixels.device, non_blocking=True)
        if measured:
            tissue[measured] = tissue_fractions(pixels[measured], self.grid)
        return tissue

    def on_host(self, plan: SlidePlan, region: int, pixels: torch.Tensor) -> torch.Tensor:
        """``(n*n,)`` tissue fraction of one region's patches: from the tiling's contours, else from its pixels."""
        if plan.tissue is not None:
            return torch.from_numpy(np.asarray(plan.tissue[region], dtype=np.float32))
        return torch.from_numpy(tissue_from_pixels(pixels.permute(1, 2, 0).cpu().numpy(), self.grid))
