"""Plan whole-slide extraction: coordinates (tiled now or reused), saved coordinates, previews, per-slide errors.

Under torchrun each rank tiles every ``world_size``-th slide; the plans are then gathered so that
extraction can share the slides over ranks balanced by their region counts.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tqdm import tqdm

from source.data.regions import BadInputError, Region
from source.data.slides import SlidePlan
from source.distributed import DistributedContext, gather_objects
from source.io import safe_join
from source.wsi.coordinates import check_matches_settings, load_coordinates, same_regions, save_coordinates
from source.wsi.preview import write_preview
from source.wsi.reader import WholeSlideRegions, choose_reader, open_pyramid
from source.wsi.settings import TilingSettings
from source.wsi.slide_table import WholeSlide
from source.wsi.tiling import PyramidRead, pyramid_read_of, tile_whole_slide
from source.wsi.tissue import tissue_from_contours

logger = logging.getLogger(__name__)

WSI_COLUMNS = ["image_path", "spacing_at_level_0", "read_level", "read_size", "tile_size_lv0", "reader"]
"""Extra ``slides.csv`` columns of a whole-slide run."""


class WholeSlidePlanner:
    """Turns ``wsi_csv`` rows into :class:`SlidePlan` objects whose regions are read from the pyramid.

    Args:
        settings: the ``tiling`` config block.
        region_size: region side in pixels at ``settings.spacing``.
        patch_size: ViT_patch input side (hs2p's reference area unit).
        run_dir: the run folder (``coordinates/``, ``previews/``, ``region_images/`` go there).
        coordinates_dir: reuse these hs2p coordinates instead of tiling (``None``: tile).
        resume: refuse slides whose coordinates differ from those saved by the run being resumed.
        save_region_images: also write every region as PNG under ``region_images/`` (QC).
    """

    def __init__(
        self,
        settings: TilingSettings,
        region_size: int,
        patch_size: int,
        run_dir: Path,
        coordinates_dir: Optional[str] = None,
        resume: bool = False,
        save_region_images: bool = False,
    ) -> None:
        self.settings = settings
        self.region_size = region_size
        self.patch_size = patch_size
        self.coordinates_out = run_dir / "coordinates"
        self.previews = run_dir / "previews"
        self.region_images = run_dir / "region_images" if save_region_images else None
        self.coordinates_dir = Path(coordinates_dir) if coordinates_dir else None
        self.resume = resume

    def plan(self, slides: Sequence[WholeSlide], context: DistributedContext) -> list[SlidePlan]:
        """Plans for every slide, in ``slides`` order, on every rank (each rank tiles its share)."""
        mine = [slide for index, slide in enumerate(slides) if index % context.world_size == context.rank]
        bar = tqdm(mine, desc="tiling", unit="slide", disable=not context.is_main, dynamic_ncols=True)
        local = [self.plan_one(slide) for slide in bar]
        by_id = {plan.slide_id: plan for part in gather_objects(local, context) for plan in part}
        return [by_id[slide.slide_id] for slide in slides]

    def plan_one(self, slide: WholeSlide) -> SlidePlan:
        """One slide's plan; any problem becomes the plan's ``error`` (the slide fails, the job goes on)."""
        details: dict[str, object] = {
            "image_path": str(slide.image_path),
            "spacing_at_level_0": slide.spacing_at_level_0,
        }
        try:
            result = self._coordinates(slide)
            tiling_read = pyramid_read_of(result, slide, self.settings, self.region_size)
            reader = choose_reader(
                self.settings.reader, tiling_read.backend, slide.image_path, tiling_read.spacing_at_level_0, result
            )
            read = replace(tiling_read, backend=reader)
            details |= {
                "reader": read.backend,
                "spacing_at_level_0": read.spacing_at_level_0,
                "read_level": read.read_level,
                "read_size": read.read_size,
                "tile_size_lv0": read.tile_size_lv0,
            }
            self._check_unchanged(slide, result)
            save_coordinates(result, self.coordinates_out)
            self._preview(slide, result, tiling_read)
            if result.num_tiles == 0:
                raise BadInputError(
                    f"no tissue region found in '{slide.image_path}' with "
                    f"tiling.min_tissue_fraction={self.settings.min_tissue_fraction} ({self.region_size}-px regions at "
                    f"{self.settings.spacing} um/px): lower tiling.min_tissue_fraction, check the slide (see "
                    f"{safe_join(self.previews, slide.slide_id, '.png')}) or its mask"
                )
        except BadInputError as error:  # logged with the other failures by the extractor
            return SlidePlan(slide.slide_id, error=str(error), details=details)
        regions = [Region(int(x), int(y)) for x, y in zip(result.x, result.y, strict=True)]
        logger.info(
            "slide %s: %d regions of %d px at %s um/px (level-0 spacing %.4g, read %d px at level %d with %s, %d px "
            "at level 0)",
            slide.slide_id,
            len(regions),
            self.region_size,
            self.settings.spacing,
            read.spacing_at_level_0,
            read.read_size,
            read.read_level,
            read.backend,
            read.tile_size_lv0,
        )
        source = WholeSlideRegions(slide.slide_id, read, self.region_images)
        tissue = self._tissue(result, regions, read.tile_size_lv0)
        return SlidePlan(slide.slide_id, regions, source=source, details=details, tissue=tissue)

    def _tissue(self, result, regions: Sequence[Region], size_lv0: int) -> Optional[np.ndarray]:
        """``(M, n*n)`` tissue fraction of each patch from the tiling's contours; None when the result has none
        (reused coordinates: the extractor then segments the region pixels)."""
        contours = getattr(result, "contours", None)
        if contours is None or not getattr(contours, "contours", None):
            return None
        grid = self.region_size // self.patch_size
        holes = getattr(contours, "holes", None)
        return np.stack([tissue_from_contours(contours.contours, holes, (r.x, r.y), size_lv0, grid) for r in regions])

    def _coordinates(self, slide: WholeSlide):
        if self.coordinates_dir is not None:
            result = load_coordinates(self.coordinates_dir, slide.slide_id)
            if result is None:
                raise BadInputError(
                    f"coordinates_dir '{self.coordinates_dir}' has no {slide.slide_id}.coordinates.meta.json: tile "
                    "this slide (drop coordinates_dir) or add its hs2p coordinates"
                )
            check_matches_settings(result, self.coordinates_dir, self.settings, self.region_size)
            return result
        return tile_whole_slide(slide, self.settings, self.region_size, self.patch_size)

    def _check_unchanged(self, slide: WholeSlide, result) -> None:
        if not self.resume:
            return
        previous = load_coordinates(self.coordinates_out, slide.slide_id)
        if previous is not None and not same_regions(previous, result):
            raise BadInputError(
                f"resume refused for slide '{slide.slide_id}': its region coordinates differ from those of the run "
                f"being resumed ({self.coordinates_out}); features of the two would not match. Use a new run_id, or "
                f"coordinates_dir={self.coordinates_out} to keep the old regions"
            )

    def _preview(self, slide: WholeSlide, result, read: PyramidRead) -> None:
        handle = open_pyramid(read.image_path, read.backend, read.spacing_at_level_0)
        try:
            dimensions = [int(v) for v in handle.dimensions]
            if dimensions != [int(v) for v in result.slide_dimensions]:
                raise BadInputError(
                    f"coordinates for slide '{slide.slide_id}' were made on a "
                    f"{result.slide_dimensions[0]}x{result.slide_dimensions[1]} px slide but '{slide.image_path}' is "
                    f"{dimensions[0]}x{dimensions[1]} px: they belong to another slide"
                )
            contours = result.contours.contours if getattr(result, "contours", None) is not None else None
            path = safe_join(self.previews, slide.slide_id, ".png")
            try:
                write_preview(handle, path, result.x, result.y, read.tile_size_lv0, contours)
            except Exception as error:  # a damaged tile under the thumbnail: the preview is QC, the slide goes on
                logger.warning(
                    "slide %s: no preview (%s: %s); its regions are read as usual",
                    slide.slide_id,
                    type(error).__name__,
                    error,
                )
        finally:
            handle.close()
