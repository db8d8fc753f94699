"""The slides a heatmap job draws: from region folders, whole-slide images, or an extraction run's slides.

Whole-slide input goes through the extraction's own planner (hs2p tiling or saved coordinates) and
reader, so a heatmap scores exactly the pixels the features were computed from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from source.data.labels import read_table
from source.data.regions import discover_slide_ids
from source.data.slides import SlidePlan, plan_slides
from source.distributed import DistributedContext
from source.errors import ConfigError
from source.wsi.settings import TilingSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeatmapInputs:
    """Where a heatmap job's slides come from (the config's input keys, read at the edge).

    Attributes:
        slide_id, slide_csv: the slides asked for (blank: every slide of the input).
        region_dir, region_format: a folder of ``<slide_id>/`` region images (``format``).
        extraction_run: an extraction run folder whose slides, tiling and sizes are reused.
        wsi_csv, coordinates_dir: whole-slide images and, optionally, saved coordinates.
        region_size, patch_size, tiling: the regions' geometry (an ``extraction_run`` brings its own).
    """

    slide_id: Optional[str] = None
    slide_csv: Optional[str] = None
    region_dir: Optional[str] = None
    region_format: str = "jpg"
    extraction_run: Optional[str] = None
    wsi_csv: Optional[str] = None
    coordinates_dir: Optional[str] = None
    region_size: int = 4096
    patch_size: int = 256
    tiling: Optional[TilingSettings] = None


@dataclass(frozen=True)
class RunGeometry:
    """An extraction run's region geometry, which its heatmaps must use: the regions are exactly those encoded."""

    region_size: int
    patch_size: int
    tiling: TilingSettings


def requested_ids(inputs: HeatmapInputs) -> list[str]:
    """``slide_id`` and the ``slide_id`` column of ``slide_csv``, in order, without duplicates."""
    ids = [inputs.slide_id] if inputs.slide_id else []
    if inputs.slide_csv:
        ids += read_table(inputs.slide_csv, ["slide_id"]).slide_id.tolist()
    return list(dict.fromkeys(ids))


@dataclass
class HeatmapSlides:
    """The slides to draw, read before any work.

    Attributes:
        ids: slide ids in drawing order.
        whole_slides: ``WholeSlide`` rows (whole-slide input), else None.
        coordinates_dir: saved coordinates to reuse (``coordinates_dir`` or the extraction run's).
        run_geometry: an ``extraction_run``'s region size, patch size and tiling, which the job adopts.
    """

    ids: list[str]
    whole_slides: Optional[list] = None
    coordinates_dir: Optional[str] = None
    run_geometry: Optional[RunGeometry] = None

    def only(self, slide_id: str) -> "HeatmapSlides":
        """The same input restricted to one slide."""
        rows = None if self.whole_slides is None else [s for s in self.whole_slides if s.slide_id == slide_id]
        return HeatmapSlides([slide_id], rows, self.coordinates_dir, self.run_geometry)


def read_heatmap_slides(inputs: HeatmapInputs) -> HeatmapSlides:
    """Which slides to draw; with ``extraction_run`` also the run's geometry (:class:`RunGeometry`), which the job
    must adopt so the regions are exactly those that were encoded.

    Raises:
        ConfigError: a bad ``wsi_csv`` or ``extraction_run``, or requested slide ids none of which it has.
    """
    wanted = requested_ids(inputs)
    if inputs.region_dir:
        return HeatmapSlides(wanted or discover_slide_ids(inputs.region_dir))
    geometry = None
    if inputs.extraction_run:
        from source.wsi.extraction_run import read_extraction_run

        run = read_extraction_run(inputs.extraction_run)
        geometry = RunGeometry(run.region_size, run.patch_size, run.tiling)
        changed = {
            key: (given, used)
            for key, given, used in (
                ("region_size", inputs.region_size, run.region_size),
                ("patch_size", inputs.patch_size, run.patch_size),
            )
            if given != used
        }
        if changed:
            logger.info(
                "extraction_run: %s",
                ", ".join(f"{k}={new} (the run's, not {old})" for k, (old, new) in changed.items()),
            )
        slides, coordinates_dir = run.slides, str(run.coordinates_dir)
    elif inputs.wsi_csv:
        from source.wsi.slide_table import read_wsi_csv

        slides, coordinates_dir = read_wsi_csv(inputs.wsi_csv), inputs.coordinates_dir
    else:
        return HeatmapSlides([])
    if wanted:
        known = {slide.slide_id for slide in slides}
        if not known & set(wanted):
            source = inputs.wsi_csv or Path(inputs.extraction_run) / "slides.csv"
            raise ConfigError(f"none of the requested slide ids ({', '.join(wanted[:5])}) is in {source}")
        slides = [slide for slide in slides if slide.slide_id in set(wanted)]
        ids = wanted
    else:
        ids = [slide.slide_id for slide in slides]
    return HeatmapSlides(ids, slides, coordinates_dir, geometry)


def plan_heatmap_slides(
    inputs: HeatmapInputs, slides: HeatmapSlides, run_dir: Path, context: DistributedContext, resume: bool
) -> list[SlidePlan]:
    """A plan per requested slide, in order; a slide that cannot be drawn gets an error instead.

    Whole-slide input: each rank tiles its share (or reads the saved coordinates) and writes
    ``coordinates/`` and ``previews/`` to the heatmap run, as extraction does.
    """
    if slides.whole_slides is None:
        return plan_slides(inputs.region_dir, slides.ids, inputs.region_format) if inputs.region_dir else []
    from source.wsi.planning import WholeSlidePlanner

    planner = WholeSlidePlanner(
        inputs.tiling, inputs.region_size, inputs.patch_size, run_dir, slides.coordinates_dir, resume=resume
    )
    by_id = {plan.slide_id: plan for plan in planner.plan(slides.whole_slides, context)}
    missing = "is not a row of wsi_csv" if inputs.wsi_csv else "did not succeed in extraction_run"
    return [
        by_id.get(slide_id) or SlidePlan(slide_id, error=f"slide '{slide_id}' {missing}") for slide_id in slides.ids
    ]
