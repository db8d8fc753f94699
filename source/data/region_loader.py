"""A dataset over the regions of many slides, decoding in DataLoader workers without ever raising.

A region that fails to decode comes back as an error message instead of an exception, so one bad
image marks its slide failed while the loader (and the batch) carries on. Regions come from image
files (``region_dir``) or from a slide's :class:`~source.data.slides.RegionSource` (a whole-slide
pyramid); a worker keeps only the slide it is reading open, as regions arrive slide by slide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from source.data.regions import BadInputError, Region, read_region
from source.data.slides import RegionSource


@dataclass(frozen=True)
class RegionItem:
    """One region to encode: which slide (by index in the job's plan) and which region of it."""

    slide_index: int
    region_index: int
    region: Region


@dataclass
class RegionBatch:
    """A collated batch.

    Attributes:
        pixels: ``(b, 3, R, R)`` uint8 of the regions decoded in the workers.
        keys: ``(slide_index, region_index)`` of each row of ``pixels``.
        failures: ``(slide_index, region_index, message)`` of the regions that did not decode.
    """

    pixels: torch.Tensor
    keys: list[tuple[int, int]] = field(default_factory=list)
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)
    """Regions left compressed (:class:`~source.wsi.raw_tiles.RawRegion`), to be decoded on the encoder's device."""
    raw_keys: list[tuple[int, int]] = field(default_factory=list)
    """``(slide_index, region_index)`` of each of ``raw``."""

    def pin_memory(self) -> "RegionBatch":
        """Pin the pixel tensor (called by the DataLoader when ``pin_memory=True``)."""
        self.pixels = self.pixels.pin_memory()
        return self


class RegionDataset(Dataset):
    """Decodes regions; item = ``(slide_index, region_index, pixels, error | None)``, pixels being ``(3, R, R)``
    uint8, a compressed region (``raw``), or None when the region failed.

    Args:
        items: the regions, in reading order.
        region_size: expected side R in pixels.
        sources: per slide index, its region source, or ``None`` when its regions are image files.
        raw: leave the regions of sources that can (``read_raw``: tiled JPEG pyramids) compressed, for decoding in
            batches on the encoder's device; the others are decoded here.
    """

    def __init__(
        self,
        items: Sequence[RegionItem],
        region_size: int,
        sources: Sequence[RegionSource | None] = (),
        raw: bool = False,
    ) -> None:
        self.items = list(items)
        self.region_size = region_size
        self.sources = list(sources)
        self.raw = raw
        self._open_slide: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _pixels(self, item: RegionItem):
        source = self.sources[item.slide_index] if item.slide_index < len(self.sources) else None
        if source is None:
            return read_region(item.region.path, self.region_size)
        if self._open_slide not in (None, item.slide_index):
            previous = self.sources[self._open_slide]
            if previous is not None:
                previous.close()
        self._open_slide = item.slide_index
        if self.raw and hasattr(source, "read_raw"):
            raw = source.read_raw(item.region)
            if raw is not None:
                return raw
        return source.read(item.region)

    def __getitem__(self, index: int) -> tuple[int, int, Any, str | None]:
        item = self.items[index]
        try:
            pixels = self._pixels(item)
        except (BadInputError, OSError) as error:
            return item.slide_index, item.region_index, None, str(error)
        if not isinstance(pixels, np.ndarray):
            return item.slide_index, item.region_index, pixels, None  # compressed: decoded on the device
        return item.slide_index, item.region_index, torch.from_numpy(pixels).permute(2, 0, 1), None


def collate_regions(samples: Sequence[tuple[int, int, Any, str | None]]) -> RegionBatch:
    """Stack the decoded regions; keep the compressed ones and the failed ones aside."""
    good = [(s, r, pixels) for s, r, pixels, error in samples if isinstance(pixels, torch.Tensor)]
    raw = [(s, r, region) for s, r, region, _ in samples if region is not None and not isinstance(region, torch.Tensor)]
    failures = [(s, r, error) for s, r, pixels, error in samples if pixels is None]
    pixels = torch.stack([p for _, _, p in good]) if good else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return RegionBatch(
        pixels=pixels,
        keys=[(s, r) for s, r, _ in good],
        failures=failures,
        raw=[region for _, _, region in raw],
        raw_keys=[(s, r) for s, r, _ in raw],
    )
