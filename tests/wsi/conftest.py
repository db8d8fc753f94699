"""Whole-slide fixtures: real H&E pixels of the demo slide written as small pyramidal TIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from source.data.demo_slide import read_slide_level0
from tests.wsi.slides import write_pyramid


@pytest.fixture(scope="session")
def he_pixels(demo_slide: Path) -> np.ndarray:
    """Level 0 of CMU-1-Small-Region cropped to 2944 x 2208 x 3 uint8 (real H&E; sides divisible by 32,
    so pyramid downsamples are exact and OpenSlide reads whole level pixels)."""
    return np.ascontiguousarray(read_slide_level0(demo_slide)[:2944, :2208])


@pytest.fixture(scope="session")
def slides_dir(he_pixels: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three pyramids of the same pixels.

    - ``he 0.5 é.tif``: 0.5 um/px, levels 1 and 1/4 (a path with spaces and non-ASCII characters);
    - ``he_025_2x.tif``: 0.25 um/px with a 2x level (0.5 um/px is read there);
    - ``he_025_no2x.tif``: 0.25 um/px, levels 1 and 1/4 (0.5 um/px is area-downsampled from level 0).
    """
    root = tmp_path_factory.mktemp("slides")
    write_pyramid(root / "he 0.5 é.tif", he_pixels, 0.5, (1, 4))
    write_pyramid(root / "he_025_2x.tif", he_pixels, 0.25, (1, 2, 8))
    write_pyramid(root / "he_025_no2x.tif", he_pixels, 0.25, (1, 4))
    return root


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A wsi_csv from dict rows (columns: the union of the rows' keys, in first-seen order)."""
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path
