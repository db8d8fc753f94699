"""Patch-stage inputs straight from whole-slide images: tiled once at start, read on the fly, never written.

Each slide of ``wsi_csv`` is tiled with hs2p into ``data.patch_size`` px patches at ``tiling.spacing``
(or its saved coordinates are read from ``coordinates_dir``) by the extraction's own planner, which
writes ``coordinates/`` and ``previews/`` into the run folder. DataLoader workers then read patches from
the pyramids with the extraction's reader, keeping a few slides open each.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image

from source.data.regions import Region
from source.data.slides import RegionSource
from source.distributed import DistributedContext
from source.pretraining.data import PretrainingDataError
from source.wsi.settings import TilingSettings

logger = logging.getLogger(__name__)
MAX_OPEN_SLIDES = 16
"""Slides a DataLoader worker keeps open at once (the least recently read is closed first)."""


@dataclass(frozen=True)
class PatchRef:
    """One patch: slide ``slide`` (index into the reader's slides) at level-0 corner (x, y)."""

    slide: int
    x: int
    y: int


class SlidePatchReader:
    """``PatchRef`` -> RGB patch image, read from its slide's pyramid.

    Args:
        slide_ids: the slides, by index.
        sources: their readers (opened lazily in the process that reads, never pickled open).
        max_open: slides kept open per process.
    """

    def __init__(
        self, slide_ids: Sequence[str], sources: Sequence[RegionSource], max_open: int = MAX_OPEN_SLIDES
    ) -> None:
        self.slide_ids, self.sources, self.max_open = list(slide_ids), list(sources), max_open
        self._recent: OrderedDict[int, None] = OrderedDict()

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_recent": OrderedDict()}

    def __call__(self, ref: PatchRef) -> Image.Image:
        """The patch as an RGB image; raises ``BadInputError`` when its tiles cannot be decoded."""
        pixels = self.sources[ref.slide].read(Region(ref.x, ref.y))
        self._recent[ref.slide] = None
        self._recent.move_to_end(ref.slide)
        while len(self._recent) > self.max_open:
            oldest, _ = self._recent.popitem(last=False)
            self.sources[oldest].close()
        return Image.fromarray(pixels)

    def describe(self, ref: PatchRef) -> str:
        """Where a patch is, for messages: slide id and level-0 corner."""
        return f"slide '{self.slide_ids[ref.slide]}' at ({ref.x}, {ref.y})"


def slide_patches(
    wsi_csv: str,
    settings: TilingSettings,
    patch_size: int,
    run_dir: Path,
    context: DistributedContext,
    coordinates_dir: Optional[str] = None,
    resume: bool = False,
) -> tuple[list[PatchRef], list[int], SlidePatchReader]:
    """Tile every slide of ``wsi_csv`` into patches (each rank tiles its share; all get every plan).

    Slides that cannot be opened or tiled are skipped with one warning listing them.

    Returns:
        the patches (slides in csv order, each slide's in its coordinates' order), the slide index
        of each patch, and the reader.

    Raises:
        PretrainingDataError: no slide could be tiled, or none has tissue.
    """
    from source.wsi.planning import WholeSlidePlanner
    from source.wsi.slide_table import read_wsi_csv

    planner = WholeSlidePlanner(settings, patch_size, patch_size, run_dir, coordinates_dir, resume=resume)
    plans = planner.plan(read_wsi_csv(wsi_csv), context)
    usable = [plan for plan in plans if not plan.error]
    skipped = [plan for plan in plans if plan.error]
    if skipped and context.is_main:
        logger.warning(
            "%d of %d slide(s) of wsi_csv are skipped: %s",
            len(skipped),
            len(plans),
            "; ".join(f"{plan.slide_id}: {plan.error}" for plan in skipped),
        )
    if not usable:
        raise PretrainingDataError(
            f"no slide of wsi_csv '{wsi_csv}' gave patches to pretrain on (see the warnings above)"
        )
    refs = [PatchRef(index, region.x, region.y) for index, plan in enumerate(usable) for region in plan.regions]
    groups = [ref.slide for ref in refs]
    if context.is_main:
        logger.info(
            "%d patches of %d px at %s um/px from %d slide(s)", len(refs), patch_size, settings.spacing, len(usable)
        )
    return refs, groups, SlidePatchReader([plan.slide_id for plan in usable], [plan.source for plan in usable])
