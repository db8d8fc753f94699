"""What a contribution map writes: the table, the distribution plot, GeoJSON in level-0 pixels, the canvas over the
slide's thumbnail (diverging colours centred at 0) and the most positive and negative regions as images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from source.explain.settings import CanvasStyle
from source.heatmaps.export import feature
from source.io import atomic_write_text, safe_join
from source.plots import save_figure
from source.wsi.extraction_run import EncodedSlide
from source.wsi.tissue import tissue_mask


def symmetric_limit(values: np.ndarray) -> float:
    """The colour range ``[-v, v]`` of a diverging map centred at 0 (v = the largest |value|, 1e-12 when all 0)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1e-12


def distribution_figure(table: pd.DataFrame, name: str, path: Path) -> Path:
    """Histogram of the contributions and the regions sorted by contribution, with the 0 line."""
    import matplotlib.pyplot as plt

    values = table.contribution.to_numpy(dtype=float)
    figure, (histogram, ranked) = plt.subplots(1, 2, figsize=(10, 3.8))
    histogram.hist(values[np.isfinite(values)], bins=min(40, max(5, len(values) // 2)), color="gray")
    histogram.axvline(0, color="black", linewidth=0.8)
    histogram.set(xlabel=f"contribution to the {name}", ylabel="regions", title="distribution")
    order = np.argsort(-values)
    colours = np.where(values[order] >= 0, "tab:red", "tab:blue")
    ranked.bar(np.arange(len(values)), values[order], color=colours, width=1.0)
    ranked.axhline(0, color="black", linewidth=0.8)
    ranked.set(xlabel="regions, by contribution", ylabel="contribution", title=f"{table.output.iloc[0]:.4g} = {name}")
    figure.suptitle(f"{table.slide_id.iloc[0]}: f(slide) - f(slide without the region)")
    return save_figure(figure, path)


def write_geojson(table: pd.DataFrame, size_lv0: int, name: str, path: Path) -> Path:
    """One level-0 square per region with its signed ``contribution`` (QuPath ``measurements``)."""
    features = [
        feature(
            int(row.x),
            int(row.y),
            size_lv0,
            f"region {int(row.region)}",
            {"contribution": row.contribution, f"{name}_without": row.without},
            "region",
        )
        for row in table.itertuples()
    ]
    atomic_write_text(path, json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def canvas_figure(
    slide: EncodedSlide,
    table: pd.DataFrame,
    name: str,
    style: CanvasStyle,
    path: Path,
    size_lv0: Optional[int] = None,
) -> Path:
    """The slide's thumbnail with each square of ``table`` (level-0 ``x``, ``y``, side ``size_lv0``: a region by
    default, or a patch) coloured by its contribution (a diverging map centred at 0) and a colorbar; with
    ``style.restrict_to_tissue`` only the tissue pixels inside the squares (hs2p's HSV rule) are coloured, glass and
    unencoded tissue show the thumbnail."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    level0_width, level0_height = slide.source.level0_size()
    scale = style.width / level0_width
    thumbnail = slide.source.thumbnail(scale)
    limit = symmetric_limit(table.contribution.to_numpy(dtype=float))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    colormap = plt.get_cmap(style.cmap)
    overlay = np.zeros((*thumbnail.shape[:2], 4), dtype=np.float32)
    tissue = tissue_mask(thumbnail) if style.restrict_to_tissue else np.ones(thumbnail.shape[:2], dtype=bool)
    size = size_lv0 or slide.source.footprint_lv0
    for row in table.itertuples():
        if not np.isfinite(row.contribution):
            continue
        top, left = int(row.y * scale), int(row.x * scale)
        bottom, right = max(int((row.y + size) * scale), top + 1), max(int((row.x + size) * scale), left + 1)
        box = overlay[top:bottom, left:right]
        colour = np.array(colormap(norm(row.contribution)), dtype=np.float32)
        box[tissue[top:bottom, left:right]] = colour * [1, 1, 1, style.opacity]
    inches = (8.0, 8.0 * level0_height / level0_width + 0.6)
    figure, axis = plt.subplots(figsize=inches)
    axis.imshow(thumbnail)
    axis.imshow(overlay)
    axis.set_axis_off()
    what = "patch" if size < slide.source.footprint_lv0 else "region"
    axis.set_title(f"{slide.slide_id}: contribution of each {what} to the {name}")
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=colormap)
    figure.colorbar(mappable, ax=axis, fraction=0.04, pad=0.02, label=f"change of the {name} (0 = none)")
    return save_figure(figure, path)


def top_regions(slide: EncodedSlide, table: pd.DataFrame, k: int, folder: Path) -> list[Path]:
    """The ``k`` most positive and ``k`` most negative regions as PNGs named by rank, sign and corner."""
    from source.data.regions import Region
    from source.heatmaps.stitch import save_png

    finite = table[np.isfinite(table.contribution)]
    chosen: Sequence[tuple[str, pd.DataFrame]] = (
        ("positive", finite[finite.contribution > 0].nlargest(k, "contribution")),
        ("negative", finite[finite.contribution < 0].nsmallest(k, "contribution")),
    )
    written = []
    for sign, rows in chosen:
        for rank, row in enumerate(rows.itertuples(), start=1):
            pixels = slide.source.read(Region(int(row.x), int(row.y)))
            path = safe_join(folder, f"{sign}_{rank}_{int(row.x)}_{int(row.y)}", ".png")
            written.append(save_png(pixels, path))
    return written
