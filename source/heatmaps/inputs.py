"""The slides a heatmap job draws: from region folders, whole-slide images, or an extraction run's slides.

Whole-slide input goes through the extraction's own planner (hs2p tiling or saved coordinates) and
reader, so a heatmap scores exactly the pixels the features were computed from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from source.data.labels import read_table
from source.data.regions import discover_slide_ids
from source.data.slides import SlidePlan, plan_slides
from source.distributed import DistributedContext
from source.errors import ConfigError

logger = logging.getLogger(__name__)


def requested_ids(cfg: DictConfig) -> list[str]:
    """``slide_id`` and the ``slide_id`` column of ``slide_csv``, in order, without duplicates."""
    ids = [cfg.slide_id] if cfg.slide_id else []
    if cfg.slide_csv:
        ids += read_table(cfg.slide_csv, ["slide_id"]).slide_id.tolist()
    return list(dict.fromkeys(ids))


@dataclass
class HeatmapSlides:
    """The slides to draw, read before any work.

    Attributes:
        ids: slide ids in drawing order.
        whole_slides: ``WholeSlide`` rows (whole-slide input), else None.
        coordinates_dir: saved coordinates to reuse (``coordinates_dir`` or the extraction run's).
    """

    ids: list[str]
    whole_slides: Optional[list] = None
    coordinates_dir: Optional[str] = None

    def only(self, slide_id: str) -> "HeatmapSlides":
        """The same input restricted to one slide."""
        rows = None if self.whole_slides is None else [s for s in self.whole_slides if s.slide_id == slide_id]
        return HeatmapSlides([slide_id], rows, self.coordinates_dir)


def read_heatmap_slides(cfg: DictConfig) -> HeatmapSlides:
    """Which slides to draw. ``extraction_run`` also sets ``cfg.region_size``, ``cfg.patch_size`` and
    ``cfg.tiling`` to the run's, so the regions are exactly those that were encoded.

    Raises:
        ConfigError: a bad ``wsi_csv`` or ``extraction_run``, or requested slide ids none of which it has.
    """
    wanted = requested_ids(cfg)
    if cfg.region_dir:
        return HeatmapSlides(wanted or discover_slide_ids(cfg.region_dir))
    if cfg.extraction_run:
        from source.wsi.extraction_run import read_extraction_run

        run = read_extraction_run(cfg.extraction_run)
        changed = {
            k: (cfg[k], v) for k, v in (("region_size", run.region_size), ("patch_size", run.patch_size)) if cfg[k] != v
        }
        if changed:
            logger.info(
                "extraction_run: %s",
                ", ".join(f"{k}={new} (the run's, not {old})" for k, (old, new) in changed.items()),
            )
        cfg.region_size, cfg.patch_size, cfg.tiling = run.region_size, run.patch_size, run.tiling
        slides, coordinates_dir = run.slides, str(run.coordinates_dir)
    elif cfg.wsi_csv:
        from source.wsi.slide_table import read_wsi_csv

        slides, coordinates_dir = read_wsi_csv(cfg.wsi_csv), cfg.coordinates_dir
    else:
        return HeatmapSlides([])
    if wanted:
        known = {slide.slide_id for slide in slides}
        if not known & set(wanted):
            source = cfg.wsi_csv or Path(cfg.extraction_run) / "slides.csv"
            raise ConfigError(f"none of the requested slide ids ({', '.join(wanted[:5])}) is in {source}")
        slides = [slide for slide in slides if slide.slide_id in set(wanted)]
        ids = wanted
    else:
        ids = [slide.slide_id for slide in slides]
    return HeatmapSlides(ids, slides, coordinates_dir)


def plan_heatmap_slides(
    cfg: DictConfig, slides: HeatmapSlides, run_dir: Path, context: DistributedContext
) -> list[SlidePlan]:
    """A plan per requested slide, in order; a slide that cannot be drawn gets an error instead.

    Whole-slide input: each rank tiles its share (or reads the saved coordinates) and writes
    ``coordinates/`` and ``previews/`` to the heatmap run, as extraction does.
    """
    if slides.whole_slides is None:
        return plan_slides(cfg.region_dir, slides.ids, cfg.format) if cfg.region_dir else []
    from source.wsi.planning import WholeSlidePlanner

    tiling = OmegaConf.to_object(cfg.tiling)
    planner = WholeSlidePlanner(
        tiling, cfg.region_size, cfg.patch_size, run_dir, slides.coordinates_dir, resume=cfg.resume
    )
    by_id = {plan.slide_id: plan for plan in planner.plan(slides.whole_slides, context)}
    missing = "is not a row of wsi_csv" if cfg.wsi_csv else "did not succeed in extraction_run"
    return [
        by_id.get(slide_id) or SlidePlan(slide_id, error=f"slide '{slide_id}' {missing}") for slide_id in slides.ids
    ]
