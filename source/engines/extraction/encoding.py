"""Encode stage: a batch's pixels on the device -> the level's features, on their way to the host."""

from __future__ import annotations

import torch
from torch.profiler import record_function

from source.engines.device_feed import DeviceFeed, PendingFeatures
from source.models.accelerator import Accelerated


class FeatureEncoder:
    """The features extraction writes, of regions whose pixels are on the encoder's device.

    Args:
        encoder: the accelerated HIPT encoder.
        level: ``global`` (ViT_region CLS, ``(b, 192)``) or ``local`` (ViT_patch CLS of every patch, ``(b, n*n, 384)``).
        mask_background: mask the patches whose tissue fraction is below ``tissue_threshold`` as attention keys of
            ViT_region (level global; the CLS token is always kept).
        tissue_threshold: the tissue fraction a patch needs to count as tissue.
    """

    def __init__(
        self, encoder: Accelerated, level: str, mask_background: bool = False, tissue_threshold: float = 0.1
    ) -> None:
        self.encoder, self.level = encoder, level
        self.mask_background, self.tissue_threshold = mask_background, tissue_threshold

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, tissue: torch.Tensor, feed: DeviceFeed) -> PendingFeatures:
        """``(b, 3, R, R)`` uint8 (on the device) -> ``(b, 192)`` (global) or ``(b, n*n, 384)`` (local), float32, on
        their way to the host (see :class:`DeviceFeed`); ``tissue`` ``(b, n*n)`` masks background patches in ViT_region
        with ``mask_background``."""
        if self.level == "global":
            token_mask = tissue >= self.tissue_threshold if self.mask_background else None
            features = self.encoder(pixels, token_mask).global_
        else:
            features = self.encoder.encode_patches(pixels)
        with record_function("hipt.d2h_copy"):
            return feed.to_host(features)
