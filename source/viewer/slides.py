"""Where each slide's pixels are, and the regions an extraction run encoded: from the viewer's own ``extraction_run`` /
``wsi_csv``, else from what the heatmap and contribution runs were given."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from source.errors import ConfigError
from source.viewer.runs import HEATMAP, RunFolder, SlideValues
from source.wsi.extraction_run import read_extraction_run
from source.wsi.slide_table import read_wsi_csv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlideFile:
    """A slide's image file and its level-0 spacing (None: the file's own)."""

    image_path: Path
    spacing: Optional[float] = None


def _from_extraction_run(folder: str | Path) -> dict[str, SlideFile]:
    run = read_extraction_run(folder)
    return {slide.slide_id: SlideFile(slide.image_path, slide.spacing_at_level_0) for slide in run.slides}


def _from_wsi_csv(path: str | Path) -> dict[str, SlideFile]:
    return {slide.slide_id: SlideFile(slide.image_path, slide.spacing_at_level_0) for slide in read_wsi_csv(path)}


def _from_run(run: RunFolder) -> dict[str, SlideFile]:
    """The slide files a run was given (its ``extraction_run`` or ``wsi_csv``, if still readable) or recorded."""
    files: dict[str, SlideFile] = {}
    if run.kind == HEATMAP and "image_path" in run.table.columns:
        files = {
            slide_id: SlideFile(Path(path)) for slide_id, path in run.table.image_path.items() if str(path).strip()
        }
    for key, read in (("extraction_run", _from_extraction_run), ("wsi_csv", _from_wsi_csv)):
        source = run.config.get(key)
        if source:
            try:
                found = read(source)
                return found | {k: v for k, v in files.items() if k not in found}
            except (ConfigError, OSError) as error:
                logger.info("%s: its %s '%s' cannot be read (%s); using slides.csv", run.folder, key, source, error)
    return files


def slide_files(
    extraction_run: Optional[str], wsi_csv: Optional[str], runs: Sequence[RunFolder]
) -> dict[str, SlideFile]:
    """Each slide's file: the viewer's ``extraction_run`` or ``wsi_csv`` first, then what each run knows.

    Raises:
        ConfigError: the viewer's own ``extraction_run`` or ``wsi_csv`` is unusable.
    """
    files: dict[str, SlideFile] = {}
    for run in reversed(runs):
        files |= _from_run(run)
    if extraction_run:
        files |= _from_extraction_run(extraction_run)
    if wsi_csv:
        files |= _from_wsi_csv(wsi_csv)
    return files


def extraction_regions(folder: str | Path) -> dict[str, SlideValues]:
    """The regions each successful slide of a whole-slide extraction run encoded (corners in feature-row order, side
    ``tile_size_lv0``), without values.

    Raises:
        ConfigError: not a finished whole-slide extraction run.
    """
    run = read_extraction_run(folder)
    sides = pd.read_csv(run.folder / "slides.csv", dtype={"slide_id": str}).set_index("slide_id").tile_size_lv0
    regions = pd.read_csv(run.folder / "regions.csv", dtype={"slide_id": str}).sort_values(["slide_id", "region_index"])
    encoded, found = {slide.slide_id for slide in run.slides}, {}
    for slide_id, rows in regions.groupby("slide_id", sort=False):
        if slide_id in encoded:
            found[slide_id] = SlideValues(rows[["x", "y"]].to_numpy(dtype=np.int64), int(sides[slide_id]))
    return found
