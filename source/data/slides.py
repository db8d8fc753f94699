"""Which slides a job processes: their regions (or why they cannot be processed) and each rank's share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from source.data.regions import BadInputError, Region, list_regions
from source.distributed import DistributedContext, balanced_shards


class RegionSource(Protocol):
    """Where a slide's region pixels come from when they are not image files (e.g. a whole-slide pyramid)."""

    def read(self, region: Region) -> np.ndarray:
        """``(R, R, 3)`` uint8 pixels of ``region``; raises ``BadInputError`` when they cannot be read."""

    def close(self) -> None:
        """Release open files (the source reopens them when read again)."""

    @property
    def footprint_lv0(self) -> int:
        """A region's side in level-0 pixels of the slide."""

    def level0_size(self) -> tuple[int, int]:
        """The slide's level-0 ``(width, height)`` in pixels."""

    def thumbnail(self, scale: float) -> np.ndarray:
        """The whole slide at ``scale`` canvas px per level-0 px: ``(round(H * scale), round(W * scale), 3)`` uint8."""


@dataclass
class SlidePlan:
    """A slide to process: its regions, or why it cannot be processed.

    Attributes:
        source: reads the regions' pixels; ``None`` for ``region_dir`` input (each region is its image file).
        details: extra ``slides.csv`` columns (whole-slide input: image path, spacing, read level, ...).
    """

    slide_id: str
    regions: list[Region] = field(default_factory=list)
    error: Optional[str] = None
    source: Optional[RegionSource] = None
    details: dict[str, Any] = field(default_factory=dict)
    tissue: Optional[np.ndarray] = None
    """``(M, n*n)`` tissue fraction of each patch from the tiling's contours; None: segmented from the pixels."""


def plan_slides(region_dir: str | Path, slide_ids: Sequence[str], image_format: str) -> list[SlidePlan]:
    """List every slide's regions; a slide whose folder or file names are unusable gets an error instead."""
    plans = []
    for slide_id in slide_ids:
        try:
            plans.append(SlidePlan(slide_id, list_regions(region_dir, slide_id, image_format)))
        except BadInputError as error:
            plans.append(SlidePlan(slide_id, error=str(error)))
    return plans


def shard_plans(plans: Sequence[SlidePlan], context: DistributedContext) -> list[SlidePlan]:
    """This rank's slides: every slide on exactly one rank, balanced by region count."""
    shards = balanced_shards([len(plan.regions) for plan in plans], context.world_size)
    return [plans[i] for i in shards[context.rank]]
