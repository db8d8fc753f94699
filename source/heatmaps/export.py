"""Attention as data: a GeoJSON per slide for QuPath and ``attention.csv``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from source.heatmaps.scores import rank_normalise
from source.io import atomic_write_csv, atomic_write_text

ATTENTION_COLUMNS = ["slide_id", "level", "x", "y", "patch", "head", "score"]


def square(x: int, y: int, size: int) -> list[list[list[int]]]:
    """GeoJSON polygon ring of the square with corner (x, y) and side ``size`` (level-0 pixels)."""
    return [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]


def feature(x: int, y: int, size: int, name: str, measurements: Mapping[str, float], kind: str) -> dict:
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

    Args:
        slide_id: the slide.
        region_size: region side (level-0 px).
        patch_size: ViT_region token side (level-0 px).
        patches_in_geojson: also one GeoJSON feature per 256-px patch.
    """

    def __init__(self, slide_id: str, region_size: int, patch_size: int, patches_in_geojson: bool = False) -> None:
        self.slide_id, self.region_size, self.patch_size = slide_id, region_size, patch_size
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
        for h, head in enumerate(heads):
            self.rows += [
                {"slide_id": self.slide_id, "level": "region", "x": x, "y": y, "patch": p, "head": head, "score": scores[h, p]}
                for p in range(scores.shape[1])
            ]
        if self.patches_in_geojson:
            for p in range(scores.shape[1]):
                px, py = x + (p % grid) * self.patch_size, y + (p // grid) * self.patch_size
                measurements = {f"region_head_{head}": scores[h, p] for h, head in enumerate(heads)}
                self.patch_features.append(feature(px, py, self.patch_size, f"{x}_{y}_patch_{p}", measurements, "patch"))

    def write(self, out_dir: Path, slide_scores: Optional[np.ndarray] = None, slide_weights: Optional[np.ndarray] = None) -> None:
        """Write both files; ``slide_scores`` (rank-normalised) and raw ``slide_weights`` are per region when known."""
        features = []
        for index, (x, y) in enumerate(self.regions):
            measurements = {}
            if slide_scores is not None:
                measurements = {"slide_attention_rank": slide_scores[index], "slide_attention": slide_weights[index]}
                self.rows.append(
                    {"slide_id": self.slide_id, "level": "slide", "x": x, "y": y, "patch": None, "head": 0, "score": slide_scores[index]}
                )
            features.append(feature(x, y, self.region_size, f"{x}_{y}", measurements, "region"))
        collection = {"type": "FeatureCollection", "features": features + self.patch_features}
        atomic_write_text(out_dir / "attention.geojson", json.dumps(collection))
        table = pd.DataFrame(self.rows, columns=ATTENTION_COLUMNS).astype({"patch": "Int64"})
        atomic_write_csv(table, out_dir / "attention.csv")
