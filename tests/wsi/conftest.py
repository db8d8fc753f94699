"""Whole-slide test helpers (the slide fixtures ``he_pixels`` and ``slides_dir`` are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A wsi_csv from dict rows (columns: the union of the rows' keys, in first-seen order)."""
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path
