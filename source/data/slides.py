"""Which slides a job processes: their regions (or why they cannot be processed) and each rank's share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from source.data.regions import BadInputError, Region, list_regions
from source.distributed import DistributedContext, balanced_shards


@dataclass
class SlidePlan:
    """A slide to process: its regions, or why it cannot be processed."""

    slide_id: str
    regions: list[Region] = field(default_factory=list)
    error: Optional[str] = None


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
