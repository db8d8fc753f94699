"""Read back what a whole-slide extraction run encoded: its slides, their coordinates and its geometry.

Heatmaps (``extraction_run=<run folder>``) use it to draw exactly the regions whose features were
extracted: the run's ``slides.csv`` gives each slide's file and level-0 spacing, its ``coordinates/``
the regions, its ``config.yaml`` the region size and the ``tiling`` block.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from source.config.core import read_saved_config
from source.errors import ConfigError
from source.wsi.reader import WholeSlideRegions
from source.wsi.settings import TilingSettings
from source.wsi.slide_table import WholeSlide
from source.wsi.tiling import PyramidRead

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractionRun:
    """The whole-slide inputs of an extraction run, ready to be planned again."""

    folder: Path
    slides: list[WholeSlide]
    coordinates_dir: Path
    tiling: TilingSettings
    region_size: int
    patch_size: int


def _spacing(value: object) -> float | None:
    try:
        spacing = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return spacing if math.isfinite(spacing) and spacing > 0 else None


def read_extraction_run(folder: str | Path) -> ExtractionRun:
    """The slides an extraction run encoded successfully (in its ``slides.csv`` order) and its geometry.

    Failed slides of the run are left out (logged).

    Raises:
        ConfigError: the folder is not a finished whole-slide extraction run (no ``config.yaml``,
            ``slides.csv`` or ``coordinates/``), or none of its slides succeeded.
    """
    folder = Path(folder)
    config_path, table_path, coordinates = folder / "config.yaml", folder / "slides.csv", folder / "coordinates"
    if not config_path.is_file() or not table_path.is_file():
        raise ConfigError(
            f"extraction_run '{folder}' is not an extraction run folder (it needs config.yaml and slides.csv): give "
            "output_dir/<experiment_name>/<run_id> of a finished extract_features.py run"
        )
    config = read_saved_config(config_path)
    if not config.get("wsi_csv") or not coordinates.is_dir():
        raise ConfigError(
            f"extraction_run '{folder}' read region images (region_dir={config.get('region_dir')}), not whole slides: "
            f"draw its heatmaps with region_dir={config.get('region_dir')}"
        )
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    done = table[table.status == "success"]
    skipped = table.slide_id[table.status != "success"].tolist()
    if skipped:
        logger.warning(
            "extraction_run: %d slide(s) failed in that run and are left out: %s", len(skipped), ", ".join(skipped)
        )
    if done.empty:
        raise ConfigError(f"extraction_run '{folder}': no slide succeeded in that run (see its slides.csv)")
    slides = [
        WholeSlide(
            slide_id=row.slide_id, image_path=Path(row.image_path), spacing_at_level_0=_spacing(row.spacing_at_level_0)
        )
        for row in done.itertuples()
    ]
    known = {f.name for f in fields(TilingSettings)}
    tiling = TilingSettings(**{k: v for k, v in config["tiling"].items() if k in known})
    return ExtractionRun(folder, slides, coordinates, tiling, int(config["region_size"]), int(config["patch_size"]))


@dataclass(frozen=True)
class EncodedSlide:
    """One slide an extraction run encoded: its regions' level-0 corners (row i = row i of its feature file) and
    a reader of their pixels and of its thumbnail."""

    slide_id: str
    corners: np.ndarray
    source: WholeSlideRegions


def read_encoded_slides(folder: str | Path) -> dict[str, EncodedSlide]:
    """The successful slides of a whole-slide extraction run, with the geometry its ``slides.csv`` recorded (read
    level, read size, level-0 footprint, reader) and the corners of ``regions.csv``.

    Raises:
        ConfigError: not a finished whole-slide extraction run (see :func:`read_extraction_run`).
    """
    run = read_extraction_run(folder)
    table = pd.read_csv(run.folder / "slides.csv", dtype={"slide_id": str}).set_index("slide_id")
    regions = pd.read_csv(run.folder / "regions.csv", dtype={"slide_id": str})
    encoded = {}
    for slide in run.slides:
        row = table.loc[slide.slide_id]
        read = PyramidRead(
            image_path=slide.image_path,
            backend=str(row.reader),
            spacing_at_level_0=float(row.spacing_at_level_0),
            read_level=int(row.read_level),
            read_size=int(row.read_size),
            tile_size_lv0=int(row.tile_size_lv0),
            region_size=run.region_size,
        )
        ordered = regions[regions.slide_id == slide.slide_id].sort_values("region_index")
        corners = ordered[["x", "y"]].to_numpy(dtype=np.int64)
        encoded[slide.slide_id] = EncodedSlide(slide.slide_id, corners, WholeSlideRegions(slide.slide_id, read))
    return encoded
