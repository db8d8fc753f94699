"""Attention as data: a GeoJSON per slide for QuPath and ``attention.csv``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from source.heatmaps.scores import rank_normalise
from source.io import atomic_write_csv, atomic_write_text

ATTENTION_COLUMNS = ["slide_id", "level", "x", "y", "size_lv0", "region_x", "region_y", "patch", "head", "score"]
"""``x``, ``y``, ``size_lv0``: the level-0 square a row scores (a patch for ``region`` rows, a region for
``slide`` rows); ``region_x``, ``region_y``: its region's corner; ``patch``: the token index in the region."""

Number = int | float


def level0(value: float) -> Number:
    """A level-0 coordinate as written: an int when whole, else rounded to 1/100 px."""
    return int(round(value)) if abs(value - round(value)) < 1e-6 else round(float(value), 2)


def square(x: Number, y: Number, size: Number) -> list[list[list[Number]]]:
    """GeoJSON polygon ring of the square with corner (x, y) and side ``size`` (level-0 pixels)."""
    return [[[x, y], [level0(x + size), y], [level0(x + size), level0(y + size)], [x, level0(y + size)], [x, y]]]


def feature(x: Number, y: Number, size: Number, name: str, measurements: Mapping[str, float], kind: str) -> dict:
    """One GeoJSON Feature with QuPath-style ``measurements``."""
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": square(x, y, size)},
        "properties": {
            "objectType": "annotation" if kind == "region" else "detection",
            "name": name,
            "classification": {"name": kind},
            "measurements": {k: float(v) for k, v in measurements.items()},
        },
    }


def region_token_scores(tokens: np.ndarray) -> np.ndarray:
    """``(Hr, n, n)`` ViT_region token attention -> rank-normalised per head, flattened ``(Hr, n*n)``."""
    return np.stack([rank_normalise(head.ravel()) for head in np.asarray(tokens)])


class AttentionExport:
    """Collects a slide's region- and slide-level scores, then writes ``attention.geojson`` and ``attention.csv``.

    Geometry is in level-0 pixels of the slide (QuPath opens the GeoJSON on the original file): a
    region's square has the side ``size_lv0`` (e.g. 8192 for a 4096-px region at 0.5 um/px of a
    0.25 um/px slide), a patch ``size_lv0 * patch_size / region_size``.

    Args:
        slide_id: the slide.
        region_size: region side in pixels (at the region spacing).
        patch_size: ViT_region token side in pixels (at the region spacing).
        patches_in_geojson: also one GeoJSON feature per 256-px patch.
        size_lv0: a region's side in level-0 pixels (default ``region_size``: region folders).
    """

    def __init__(
        self,
        slide_id: str,
        region_size: int,
        patch_size: int,
        patches_in_geojson: bool = False,
        size_lv0: Optional[int] = None,
    ) -> None:
        self.slide_id, self.region_size, self.patch_size = slide_id, region_size, patch_size
        self.size_lv0 = int(size_lv0 or region_size)
        self.patch_lv0 = self.size_lv0 * patch_size / region_size
        self.patches_in_geojson = patches_in_geojson
        self.rows: list[dict] = []
        self.regions: list[tuple[int, int]] = []
        self.patch_features: list[dict] = []

    def add_region(self, x: int, y: int, tokens: Optional[np.ndarray], heads: Sequence[int]) -> None:
        """Record the ViT_region token scores ``(H_all, n, n)`` of the region at (x, y) for ``heads``."""
        self.regions.append((x, y))
        if tokens is None:
            return
        scores = region_token_scores(np.asarray(tokens)[list(heads)])
        grid = int(round(scores.shape[1] ** 0.5))
        corners = [
            (level0(x + (p % grid) * self.patch_lv0), level0(y + (p // grid) * self.patch_lv0))
            for p in range(scores.shape[1])
        ]
        side = level0(self.patch_lv0)
        for h, head in enumerate(heads):
            self.rows += [
                {
                    "slide_id": self.slide_id,
                    "level": "region",
                    "x": px,
                    "y": py,
                    "size_lv0": side,
                    "region_x": x,
                    "region_y": y,
                    "patch": p,
                    "head": head,
                    "score": scores[h, p],
                }
                for p, (px, py) in enumerate(corners)
            ]
        if self.patches_in_geojson:
            for p, (px, py) in enumerate(corners):
                measurements = {f"region_head_{head}": scores[h, p] for h, head in enumerate(heads)}
                self.patch_features.append(feature(px, py, side, f"{x}_{y}_patch_{p}", measurements, "patch"))

    def write(
        self, out_dir: Path, slide_scores: Optional[np.ndarray] = None, slide_weights: Optional[np.ndarray] = None
    ) -> None:
        """Write both files; ``slide_scores`` (rank-normalised) and raw ``slide_weights`` are per region when known."""
        features = []
        for index, (x, y) in enumerate(self.regions):
            measurements = {}
            if slide_scores is not None:
                measurements = {"slide_attention_rank": slide_scores[index], "slide_attention": slide_weights[index]}
                self.rows.append(
                    {
                        "slide_id": self.slide_id,
                        "level": "slide",
                        "x": x,
                        "y": y,
                        "size_lv0": self.size_lv0,
                        "region_x": x,
                        "region_y": y,
                        "patch": None,
                        "head": 0,
                        "score": slide_scores[index],
                    }
                )
            features.append(feature(x, y, self.size_lv0, f"{x}_{y}", measurements, "region"))
        collection = {"type": "FeatureCollection", "features": features + self.patch_features}
        atomic_write_text(out_dir / "attention.geojson", json.dumps(collection))
        table = pd.DataFrame(self.rows, columns=ATTENTION_COLUMNS).astype({"patch": "Int64"})
        atomic_write_csv(table, out_dir / "attention.csv")
