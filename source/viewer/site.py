"""The viewer site: each slide's folder (pyramid, overlays, thumbnail, top regions, page), built under a temporary name
and renamed when complete, and the index of every slide.

``<run>/slides/<slide_id>/``: ``index.html``, ``thumbnail.jpg``, ``tiles/slide_files/<level>/<col>_<row>.jpeg``,
``overlays/<layer>.png``, ``top_regions/*.png``; ``<run>/index.html``, ``<run>/slides.csv``, ``<run>/assets/``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from source.data.regions import BadInputError
from source.io import UnsafePathError, atomic_write_csv, atomic_write_text, safe_join
from source.viewer.deepzoom import DeepZoom, TileSettings, write_deep_zoom
from source.viewer.geometry import Box, lattice, regions_box
from source.viewer.inputs import ViewerInputs
from source.viewer.layers import OUTLINE_LAYERS, VALUE_LAYERS, scale_of
from source.viewer.overlays import Placed, grid_overlay, tissue_overlay, value_overlay
from source.viewer.pages import IndexRow, index_page, slide_page
from source.viewer.pyramid import SlideView, open_slide_file
from source.viewer.runs import SlideValues

logger = logging.getLogger(__name__)
SLIDES, PAGE, THUMBNAIL = "slides", "index.html", "thumbnail.jpg"
TISSUE_SIDE = 1024
"""The tissue outlines are drawn on the pyramid level at most this many pixels wide and high."""
FIRST_LAYERS = ("attention", "contributions")
"""The layer shown at first: the first of these the slide has."""
INITIAL_OPACITY = 0.5


@dataclass(frozen=True)
class SiteSettings:
    """How slides are tiled: tile settings, and whether only the regions' bounding box is."""

    tiles: TileSettings
    tissue_bbox_only: bool = True


def slide_folder(run_dir: Path, slide_id: str) -> Path:
    """``run_dir/slides/<slide_id>``.

    Raises:
        UnsafePathError: the slide id is not a plain folder name.
    """
    return safe_join(Path(run_dir) / SLIDES, slide_id)


def layer_names(values: Optional[SlideValues]) -> list[str]:
    """The layers a slide's page has, in the order of its layer list."""
    if values is None:
        return ["tissue"]
    return [name for name in VALUE_LAYERS if name in values.layers] + list(OUTLINE_LAYERS)


def build_slide(
    inputs: ViewerInputs, slide_id: str, run_dir: Path, settings: SiteSettings, resume: bool, progress: bool
) -> dict:
    """Build one slide's folder (kept as it is when ``resume`` and its page exists); returns its row of
    ``slides.csv``: a slide that cannot be built is a ``failed`` row, never an exception."""
    outcome = {"slide_id": slide_id, "status": "success", "error": "", "num_regions": 0, "layers": "", "page": ""}
    try:
        target = slide_folder(run_dir, slide_id)
        values = inputs.values(slide_id)
        outcome |= {
            "num_regions": 0 if values is None else len(values.corners),
            "layers": ";".join(layer_names(values)),
        }
        if resume and (target / PAGE).is_file():
            logger.info("slide %s already built", slide_id)
        else:
            _build(inputs, slide_id, values, target, settings, progress)
            logger.info("slide %s: %s -> %s", slide_id, outcome["layers"], target / PAGE)
        outcome["page"] = (target / PAGE).relative_to(run_dir).as_posix()
    except (BadInputError, UnsafePathError, ValueError) as error:  # a run's table that pandas cannot read, too
        outcome.update(status="failed", error=str(error))
        logger.warning("slide %s failed: %s", slide_id, error)
    return outcome


def _build(
    inputs: ViewerInputs,
    slide_id: str,
    values: Optional[SlideValues],
    target: Path,
    settings: SiteSettings,
    progress: bool,
) -> None:
    """Write the slide's pyramid, overlays, thumbnail, top regions and page into ``.<slide_id>.partial/``, then rename
    it to ``target`` (a killed build leaves no page: it is built again on resume)."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # a build a killed job left
    try:
        file = inputs.file(slide_id)
        reader = open_slide_file(file.image_path, file.spacing)
        width, height = (int(v) for v in reader.dimensions)
        box = Box(0, 0, width, height)
        if settings.tissue_bbox_only and values is not None:  # regions over the slide's edge: white beyond it
            box = regions_box(values.corners, values.size_lv0)
        view = SlideView(reader, box)
        try:
            zoom = write_deep_zoom(view, partial / "tiles" / "slide_files", settings.tiles, slide_id, progress)
        finally:
            view.close()
        shutil.copyfile(zoom.tile_path(zoom.level_within(settings.tiles.tile_size), 0, 0), partial / THUMBNAIL)
        data = {
            "slide_id": slide_id,
            "tile_source": zoom.tile_source("tiles/slide_files/"),
            "box": {"x": box.x, "y": box.y, "width": box.width, "height": box.height},
            "layers": _overlays(values, zoom, box, partial / "overlays"),
            "regions": _regions(values, partial / "top_regions"),
        }
        notes = [("slide", slide_id), ("image", str(file.image_path))] + (values.notes if values is not None else [])
        atomic_write_text(partial / PAGE, slide_page(slide_id, data, notes + _prediction_notes(inputs, slide_id)))
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _save(placed: Placed, path: Path) -> dict:
    """Write an overlay image; returns its url (relative to the page) and the level-0 rectangle it covers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    placed.image.save(path, format="PNG")
    box = {"x": placed.x, "y": placed.y, "width": placed.width, "height": placed.height}
    return {"url": f"{path.parent.name}/{path.name}", "box": box}


def _value_layer(name: str, values: SlideValues, folder: Path) -> dict:
    """A value layer's image (its own lattice: a pixel per region, or n x n per region) and its entry."""
    layer = values.layers[name]
    grid = lattice(values.corners, values.size_lv0, 1 if layer.ndim == 1 else layer.shape[1])
    scale = scale_of(name, layer)
    image = value_overlay(layer, values.corners, grid, scale)
    placed = Placed(image, grid.box.x, grid.box.y, grid.width * grid.cell, grid.height * grid.cell)
    entry = {"name": name, "kind": "region" if layer.ndim == 1 else "patch", "title": VALUE_LAYERS[name].title}
    return entry | {"cmap": scale.cmap, "vmin": scale.vmin, "vmax": scale.vmax} | _save(placed, folder / f"{name}.png")


def _grid_layer(values: SlideValues, labelled: Optional[str], folder: Path) -> dict:
    """The regions' outlines, labelled with their row and their value of the layer ``labelled`` (if any)."""
    labels = [
        f"{row}" + (f"\n{values.layers[labelled][row]:.4g}" if labelled else "") for row in range(len(values.corners))
    ]
    placed = grid_overlay(values.corners, values.size_lv0, labels)
    entry = {"name": "grid", "kind": "outline", "title": OUTLINE_LAYERS["grid"], "labels": labelled}
    return entry | _save(placed, folder / "grid.png")


def _tissue_layer(zoom: DeepZoom, box: Box, folder: Path) -> dict:
    """Tissue outlines drawn on the finest pyramid level at most :data:`TISSUE_SIDE` px, over the pyramid's box."""
    level = zoom.level_within(TISSUE_SIDE)
    factor = 2 ** (zoom.levels - 1 - level)
    outlines = tissue_overlay(zoom.level_pixels(level))
    placed = Placed(outlines, box.x, box.y, outlines.width * factor, outlines.height * factor)
    return {"name": "tissue", "kind": "outline", "title": OUTLINE_LAYERS["tissue"]} | _save(
        placed, folder / "tissue.png"
    )


def _overlays(values: Optional[SlideValues], zoom: DeepZoom, box: Box, folder: Path) -> list[dict]:
    """Every overlay of the slide (:func:`layer_names` order) and its entry in the page's layer list; the first of
    :data:`FIRST_LAYERS` it has is visible."""
    layers = []
    if values is not None:
        layers = [_value_layer(name, values, folder) for name in VALUE_LAYERS if name in values.layers]
        labelled = next((layer["name"] for layer in layers if layer["kind"] == "region"), None)
        layers.append(_grid_layer(values, labelled, folder))
    layers.append(_tissue_layer(zoom, box, folder))
    first = next((layer["name"] for layer in layers if layer["name"] in FIRST_LAYERS), None)
    return [layer | {"visible": layer["name"] == first, "opacity": INITIAL_OPACITY} for layer in layers]


def _regions(values: Optional[SlideValues], folder: Path) -> list[dict]:
    """The page's regions: row, level-0 corner and size, the value of each region layer, the n x n values of each
    patch layer (row-major), and the region's top-region image (copied beside the page)."""
    if values is None:
        return []
    regions = []
    for row, (x, y) in enumerate(values.corners.tolist()):
        region = {"row": row, "x": x, "y": y, "width": values.size_lv0, "height": values.size_lv0, "values": {}}
        for name, layer in values.layers.items():
            if layer.ndim == 1 and np.isfinite(layer[row]):
                region["values"][name] = float(layer[row])
            elif layer.ndim == 3:
                region.setdefault("patches", {})[name] = layer[row].tolist()
        image = values.top_regions.get(row)
        if image is not None:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, folder / image.name)
            region["top_region"] = f"{folder.name}/{image.name}"
        regions.append(region)
    return regions


def _prediction_notes(inputs: ViewerInputs, slide_id: str) -> list[tuple[str, str]]:
    prediction = inputs.predictions.get(slide_id)
    if prediction is None:
        return []
    notes = [("label", prediction.label), ("prediction", prediction.prediction)]
    if prediction.score is not None:
        notes.append((prediction.score_name, f"{prediction.score:.4g}"))
    return [(label, text) for label, text in notes if text]


def write_index(run_dir: Path, inputs: ViewerInputs, outcomes: Sequence[dict]) -> Path:
    """``slides.csv`` and ``index.html`` of the site, from every slide's outcome (in order)."""
    atomic_write_csv(pd.DataFrame(outcomes), Path(run_dir) / "slides.csv")
    model = inputs.model()
    rows = []
    for outcome in outcomes:
        prediction = inputs.predictions.get(outcome["slide_id"])
        scores = {} if prediction is None else vars(prediction)
        rows.append(
            IndexRow(
                outcome["slide_id"],
                outcome["status"],
                outcome["error"],
                model=model,
                num_regions=int(outcome["num_regions"]),
                layers=outcome["layers"].replace(";", ", "),
                **scores,
            )
        )
    path = Path(run_dir) / PAGE
    atomic_write_text(path, index_page(rows, Path(run_dir).name))
    return path
