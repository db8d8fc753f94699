"""What a heatmap run and a contribution run wrote, read back: which slides they drew, and per slide the regions'
level-0 corners, the values of each layer and the top-region images.

- heatmap run (``attention_visualization.py``): ``slides.csv``, ``<slide>/attention.csv``: rows ``slide`` (the slide
  model's attention over the regions, rank-normalised: layer ``attention``) and rows ``region`` (ViT_region's attention
  over each region's n x n patches, rank-normalised per head: layer ``region_attention``, the mean over the heads the
  run kept);
- contribution run (``contribution_maps.py``): ``slides.csv``, ``<slide>/contributions.csv`` (layer ``contributions``),
  ``patch_contributions.csv`` (layer ``patch_contributions``), ``contributions.geojson`` (the regions' side) and
  ``top_regions/<sign>_<rank>_<x>_<y>.png``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from source.config.core import read_saved_config
from source.data.regions import BadInputError
from source.errors import ConfigError
from source.io import safe_join

logger = logging.getLogger(__name__)
HEATMAP, CONTRIBUTION = "heatmap", "contribution"
RUN_KEYS = {HEATMAP: "heatmap_run", CONTRIBUTION: "contribution_run"}
TABLES = {HEATMAP: "attention.csv", CONTRIBUTION: "contributions.csv"}
"""The table a run writes last for a slide: the slide's values."""


@dataclass(frozen=True)
class SlideValues:
    """Regions and the values drawn over them, for one slide.

    Attributes:
        corners: ``(N, 2)`` int64 level-0 corners; region ``i`` is row ``i``.
        size_lv0: a region's side in level-0 pixels.
        layers: layer name -> ``(N,)`` one value per region, or ``(N, n, n)`` one per patch (row-major), NaN where a
            region has none.
        top_regions: region row -> its image (a contribution run's ``top_regions/``).
        notes: ``(label, text)`` lines that say what the values are.
    """

    corners: np.ndarray
    size_lv0: int
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    top_regions: dict[int, Path] = field(default_factory=dict)
    notes: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RunFolder:
    """A finished heatmap or contribution run.

    Attributes:
        kind: ``heatmap`` or ``contribution``.
        folder: the run folder.
        slide_ids: its successful slides, in its ``slides.csv`` order.
        config: its saved ``config.yaml``.
        table: its ``slides.csv`` rows of those slides, indexed by ``slide_id``.
    """

    kind: str
    folder: Path
    slide_ids: list[str]
    config: dict
    table: pd.DataFrame


def read_run(folder: str | Path, kind: str) -> RunFolder:
    """The slides a heatmap or contribution run drew successfully (its failed slides are logged and left out).

    Raises:
        ConfigError: the folder has no ``config.yaml`` and ``slides.csv`` (not a finished run), or no slide succeeded.
    """
    folder, key = Path(folder), RUN_KEYS[kind]
    script = "attention_visualization.py" if kind == HEATMAP else "contribution_maps.py"
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"{key} '{folder}' is not a run folder of {script} (it has no config.yaml)")
    if not (folder / "slides.csv").is_file():
        raise ConfigError(
            f"{key} '{folder}' has no slides.csv: it drew no slide (only patch_fp / region_fp?) or is not finished"
        )
    table = pd.read_csv(folder / "slides.csv", dtype={"slide_id": str}, keep_default_na=False)
    done = table[table.status == "success"]
    failed = table.slide_id[table.status != "success"].tolist()
    if failed:
        logger.warning("%s: %d slide(s) failed in that run and are left out: %s", key, len(failed), ", ".join(failed))
    if done.empty:
        raise ConfigError(f"{key} '{folder}' has no slide drawn successfully (see its slides.csv): nothing to view")
    return RunFolder(
        kind, folder, done.slide_id.tolist(), read_saved_config(folder / "config.yaml"), done.set_index("slide_id")
    )


def slide_table(run: RunFolder, slide_id: str) -> Path:
    """The run's table of ``slide_id`` (``attention.csv`` / ``contributions.csv``).

    Raises:
        BadInputError: the file is gone (the run folder was moved or cleaned).
    """
    path = safe_join(run.folder, slide_id) / TABLES[run.kind]
    if not path.is_file():
        raise BadInputError(f"{RUN_KEYS[run.kind]}: {path} is missing; was the run folder cleaned or moved?")
    return path


def heatmap_values(run: RunFolder, slide_id: str) -> SlideValues:
    """Layers ``attention`` (with the run's slide weights) and ``region_attention`` of one slide of a heatmap run."""
    table = pd.read_csv(slide_table(run, slide_id))
    patches = table[table.level == "region"]
    corners = _unique_corners(table[["region_x", "region_y"]].to_numpy(dtype=np.int64))
    index = {tuple(corner): row for row, corner in enumerate(corners.tolist())}
    layers = {}
    slide_rows = table[table.level == "slide"]
    if not slide_rows.empty:
        layers["attention"] = _per_region(slide_rows, index, "score")
    side = _heatmap_region_side(run, slide_id, slide_rows, patches)
    if not patches.empty:
        layers["region_attention"] = _per_patch(
            patches.groupby(["region_x", "region_y", "patch"], as_index=False).score.mean(), index, "score"
        )
    heads = sorted(patches["head"].unique().tolist()) if not patches.empty else []
    notes = [("heatmap run", str(run.folder))]
    if heads:
        notes.append(("region_attention", f"ViT_region's attention over the patches, mean over heads {heads}"))
    weights = run.config.get("slide_weights")
    notes.append(("attention", f"slide model {weights}" if weights else "none: the run had no slide_weights"))
    return SlideValues(corners, side, layers, {}, notes)


def _heatmap_region_side(run: RunFolder, slide_id: str, slide_rows: pd.DataFrame, patches: pd.DataFrame) -> int:
    """The regions' level-0 side: that of the slide rows, else ``tile_size_lv0`` of ``slides.csv``, else n patches."""
    if not slide_rows.empty:
        return int(round(float(slide_rows.size_lv0.iloc[0])))
    recorded = run.table.loc[slide_id].get("tile_size_lv0", "")
    if str(recorded).strip():
        return int(float(recorded))
    grid = math.isqrt(int(patches.patch.max()) + 1)
    return int(round(grid * float(patches.size_lv0.iloc[0])))


def contribution_values(run: RunFolder, slide_id: str, fallback: Optional[SlideValues]) -> SlideValues:
    """Layers ``contributions`` and (level-local HIPT) ``patch_contributions`` of one slide of a contribution run.

    Args:
        fallback: the slide's regions from an extraction run, for a run that was given no pixels (its table has no
            ``x``, ``y``).

    Raises:
        BadInputError: the table has no corners and there is no fallback, or the fallback has another region count;
            a table that is gone.
    """
    folder = safe_join(run.folder, slide_id)
    table = pd.read_csv(slide_table(run, slide_id)).sort_values("region")
    if {"x", "y"} <= set(table.columns):
        corners = table[["x", "y"]].to_numpy(dtype=np.int64)
        side = _geojson_side(folder / "contributions.geojson", fallback)
    else:
        corners, side = _fallback_corners(slide_id, len(table), fallback)
    layers = {"contributions": table.contribution.to_numpy(dtype=float)}
    patch_path = folder / "patch_contributions.csv"
    if patch_path.is_file():
        patches = pd.read_csv(patch_path)
        grid = int(patches["row"].max()) + 1
        values = np.full((len(corners), grid, grid), np.nan)
        values[patches.region.to_numpy(), patches["row"].to_numpy(), patches.col.to_numpy()] = patches.contribution
        layers["patch_contributions"] = values
    first = table.iloc[0]
    target = f" of class {first.target_class}" if str(first.get("target_class", "")).strip() not in {"", "nan"} else ""
    notes = [
        ("contribution run", str(run.folder)),
        (
            "contributions",
            f"change of the {first.explained}{target} when the region is removed; {first.explained} "
            f"{float(first.output):.4g}",
        ),
        ("model", str(run.config.get("checkpoint") or run.config.get("run_dir"))),
    ]
    return SlideValues(corners, side, layers, _top_regions(folder / "top_regions", corners), notes)


def _fallback_corners(slide_id: str, count: int, fallback: Optional[SlideValues]) -> tuple[np.ndarray, int]:
    """The corners and side of a slide the contribution run had no pixels of, from the viewer's ``extraction_run``."""
    if fallback is None:
        raise BadInputError(
            f"contribution_run: slide '{slide_id}' has no region corners (the run was given no pixels): set "
            "extraction_run to the extraction run whose features it explained"
        )
    if len(fallback.corners) != count:
        raise BadInputError(
            f"slide '{slide_id}': extraction_run has {len(fallback.corners)} regions, the contribution run {count}: "
            "give the extraction run whose features it explained"
        )
    return fallback.corners, fallback.size_lv0


def _geojson_side(path: Path, fallback: Optional[SlideValues]) -> int:
    """A region's side from the first square of ``contributions.geojson`` (or the fallback's)."""
    if path.is_file():
        ring = json.loads(path.read_text())["features"][0]["geometry"]["coordinates"][0]
        return int(round(ring[2][0] - ring[0][0]))
    if fallback is not None:
        return fallback.size_lv0
    raise BadInputError(f"{path} is missing: the regions' size is unknown; set extraction_run to the run's extraction")


def _top_regions(folder: Path, corners: np.ndarray) -> dict[int, Path]:
    """Region row -> its image among ``top_regions/<sign>_<rank>_<x>_<y>.png``."""
    rows = {tuple(corner): row for row, corner in enumerate(corners.tolist())}
    found = {}
    for path in sorted(folder.glob("*_*_*_*.png")) if folder.is_dir() else []:
        x, y = path.stem.split("_")[-2:]
        row = rows.get((int(x), int(y)))
        if row is not None:
            found[row] = path
    return found


def _unique_corners(corners: np.ndarray) -> np.ndarray:
    """The distinct rows of ``(M, 2)`` corners, in order of first appearance."""
    _, first = np.unique(corners, axis=0, return_index=True)
    return corners[np.sort(first)].reshape(-1, 2)


def _per_region(rows: pd.DataFrame, index: dict, column: str) -> np.ndarray:
    values = np.full(len(index), np.nan)
    for x, y, value in zip(rows.region_x, rows.region_y, rows[column], strict=True):
        values[index[(int(x), int(y))]] = value
    return values


def _per_patch(rows: pd.DataFrame, index: dict, column: str) -> np.ndarray:
    grid = math.isqrt(int(rows.patch.max()) + 1)
    values = np.full((len(index), grid, grid), np.nan)
    for x, y, patch, value in zip(rows.region_x, rows.region_y, rows.patch, rows[column], strict=True):
        values[index[(int(x), int(y))], int(patch) // grid, int(patch) % grid] = value
    return values


def merge_values(parts: list[SlideValues], slide_id: str) -> SlideValues:
    """One slide's values from several runs: the regions of the first, then those only the others have (matched by
    corner); a layer is NaN on the regions its run did not draw.

    Raises:
        BadInputError: the runs' regions have different sides.
    """
    sides = {part.size_lv0 for part in parts}
    if len(sides) > 1:
        raise BadInputError(
            f"slide '{slide_id}': the runs' regions have different sides ({sorted(sides)} level-0 px): view them in "
            "two viewer runs"
        )
    corners = _unique_corners(np.concatenate([part.corners for part in parts]))
    index = {tuple(corner): row for row, corner in enumerate(corners.tolist())}
    layers, top, notes = {}, {}, []
    for part in parts:
        rows = np.array([index[tuple(corner)] for corner in part.corners.tolist()], dtype=np.int64)
        for name, values in part.layers.items():
            merged = np.full((len(corners), *values.shape[1:]), np.nan)
            merged[rows] = values
            layers[name] = merged
        top |= {int(rows[row]): path for row, path in part.top_regions.items()}
        notes += part.notes
    return SlideValues(corners, sides.pop(), layers, top, notes)
