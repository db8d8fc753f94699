"""Read stage: planned regions -> batches of uint8 pixels ``(b, 3, R, R)``.

DataLoader workers read (and decode) the regions; with ``decode_on_device``, whole-slide regions of tiled JPEG
pyramids come back compressed and are decoded here, each batch's tiles at once on the encoder's device (nvJPEG on a
GPU).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from source.data.region_loader import RegionBatch, RegionDataset, RegionItem, collate_regions
from source.data.slides import SlidePlan
from source.devices import usable_workers

logger = logging.getLogger(__name__)

Decoded = tuple[torch.Tensor, list[tuple[int, int]], list[tuple[int, int, str]]]
"""A batch's pixels ``(b, 3, R, R)`` uint8, their keys ``(slide, region)`` and its failures ``(slide, region, why)``."""


class RegionReader:
    """Batches of the regions of pending slides, decoded.

    Args:
        region_size: expected region side in pixels.
        batch_size: regions per batch.
        num_workers: DataLoader reading (and decoding) processes.
        device: the encoder's first device: host memory is pinned for it on CUDA; raw tiles are decoded there.
        decode_on_device: leave whole-slide regions of tiled JPEG pyramids compressed in the workers and decode them in
            :meth:`decode`; other regions are decoded in the workers.
    """

    def __init__(
        self, region_size: int, batch_size: int, num_workers: int, device: torch.device, decode_on_device: bool = False
    ) -> None:
        self.region_size, self.batch_size, self.num_workers = region_size, batch_size, num_workers
        self.device, self.decode_on_device = device, decode_on_device
        self._told_raw = False

    def batches(self, pending: Sequence[SlidePlan]) -> DataLoader:
        """The regions of ``pending``, slide after slide, in batches (keys index ``pending`` and each slide's
        regions)."""
        items = [RegionItem(s, r, region) for s, plan in enumerate(pending) for r, region in enumerate(plan.regions)]
        return DataLoader(
            RegionDataset(items, self.region_size, [plan.source for plan in pending], raw=self.decode_on_device),
            batch_size=self.batch_size,
            num_workers=usable_workers(self.num_workers),
            collate_fn=collate_regions,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if self.num_workers else None,
        )

    def decode(self, batch: RegionBatch) -> Decoded:
        """Every region of ``batch`` as pixels, their keys, and the failures: the rows the workers decoded, then the
        compressed ones decoded in one batch on the device (a region whose tiles do not decode becomes a failure)."""
        if not batch.raw:
            return batch.pixels, batch.keys, batch.failures
        from source.wsi.raw_tiles import decode_regions

        device = self.device
        if not self._told_raw:
            logger.info("decoding whole-slide JPEG tiles in batches on %s (jpeg_decode)", device)
            self._told_raw = True
        parts = [batch.pixels.to(device, non_blocking=True)] if batch.keys else []
        keys, failures = list(batch.keys), list(batch.failures)
        try:
            parts.append(decode_regions(batch.raw, device))
            keys += batch.raw_keys
        except RuntimeError:  # find the region whose tiles are corrupt; the others go on
            for key, raw in zip(batch.raw_keys, batch.raw, strict=True):
                try:
                    parts.append(decode_regions([raw], device))
                    keys.append(key)
                except RuntimeError as error:
                    failures.append((*key, f"its JPEG tiles do not decode ({str(error).splitlines()[0]})"))
        pixels = torch.cat(parts) if parts else batch.pixels
        return pixels, keys, failures
