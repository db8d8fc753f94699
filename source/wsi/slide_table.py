"""The ``wsi_csv`` table: which whole-slide images to process, with an optional tissue mask and spacing.

Columns: ``slide_id`` (or ``sample_id``, as in the HS2P tiler's ``process_list.csv``), ``image_path``,
optional ``mask_path`` and ``spacing_at_level_0`` (um/px, overrides the file's own). Relative paths
are taken from the csv's folder (and recorded absolute). Extra columns (hs2p's ``tiling_status``, ...) are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from source.errors import ConfigError
from source.io import UnsafePathError, safe_join


@dataclass(frozen=True)
class WholeSlide:
    """One slide of ``wsi_csv``."""

    slide_id: str
    image_path: Path
    mask_path: Optional[Path] = None
    spacing_at_level_0: Optional[float] = None


def _blank(value: object) -> bool:
    return (
        value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in {"", "None", "nan"}
    )


def _path(value: object, base: Path) -> Path:
    path = Path(str(value).strip()).expanduser()
    return path if path.is_absolute() else (base / path).absolute()


def _spacing(value: object, csv_path: Path, row: int) -> Optional[float]:
    if _blank(value):
        return None
    try:
        spacing = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        spacing = float("nan")
    if not math.isfinite(spacing) or spacing <= 0:
        raise ConfigError(
            f"wsi_csv '{csv_path}', row {row}: spacing_at_level_0 is {value!r}; give the level-0 pixel size in um/px "
            "(e.g. 0.25 at 40x, 0.5 at 20x) or leave it blank to use the slide's own"
        )
    return spacing


def read_wsi_csv(csv_path: str | Path, only: Optional[Sequence[str]] = None) -> list[WholeSlide]:
    """Read and check ``wsi_csv``; rows in file order (restricted to ``only`` ids when given).

    Raises:
        ConfigError: the file is missing or empty, lacks ``image_path`` or ``slide_id`` / ``sample_id``,
            has a blank or duplicate slide id, a slide id that is not a plain name (it would escape
            the output folder), or a bad ``spacing_at_level_0``; the message names the file and row.
    """
    csv_path = Path(csv_path)
    table, id_column = _read_table(csv_path)
    slides: list[WholeSlide] = []
    seen: dict[str, int] = {}
    for index, row in table.iterrows():
        line = int(index) + 2  # 1-based, after the header
        slide_id = _slide_id(row[id_column], csv_path, line, id_column)
        if slide_id in seen:
            raise ConfigError(
                f"wsi_csv '{csv_path}': {id_column} '{slide_id}' is on rows {seen[slide_id]} and {line}; slide ids "
                "must be unique"
            )
        seen[slide_id] = line
        if _blank(row["image_path"]):
            raise ConfigError(f"wsi_csv '{csv_path}', row {line}: image_path is blank for slide '{slide_id}'")
        mask = row.get("mask_path")
        slides.append(
            WholeSlide(
                slide_id=slide_id,
                image_path=_path(row["image_path"], csv_path.parent),
                mask_path=None if _blank(mask) else _path(mask, csv_path.parent),
                spacing_at_level_0=_spacing(row.get("spacing_at_level_0"), csv_path, line),
            )
        )
    if only is not None:
        wanted = set(only)
        slides = [slide for slide in slides if slide.slide_id in wanted]
    return slides


def _read_table(csv_path: Path) -> tuple[pd.DataFrame, str]:
    """The csv as strings, and its id column (``slide_id`` or ``sample_id``); checks columns and rows."""
    if not csv_path.is_file():
        raise ConfigError(
            f"wsi_csv '{csv_path}' is not a file: give a csv with columns slide_id, image_path[, mask_path][, "
            "spacing_at_level_0]"
        )
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ConfigError(f"wsi_csv '{csv_path}' cannot be read as a csv ({error})") from error
    table.columns = [str(column).strip() for column in table.columns]
    id_column = "slide_id" if "slide_id" in table.columns else "sample_id" if "sample_id" in table.columns else None
    missing = [
        name
        for name, ok in (("slide_id (or sample_id)", id_column), ("image_path", "image_path" in table.columns))
        if not ok
    ]
    if missing:
        raise ConfigError(
            f"wsi_csv '{csv_path}' has no column {' and no column '.join(missing)} (columns: {list(table.columns)})"
        )
    if table.empty:
        raise ConfigError(f"wsi_csv '{csv_path}' has no rows: list one slide per row")
    return table, id_column


def _slide_id(value: object, csv_path: Path, line: int, id_column: str) -> str:
    """A row's slide id: not blank, and a plain name (it names output files)."""
    slide_id = str(value).strip()
    if not slide_id:
        raise ConfigError(f"wsi_csv '{csv_path}', row {line}: {id_column} is blank")
    try:
        safe_join(".", slide_id)
    except UnsafePathError as error:
        raise ConfigError(f"wsi_csv '{csv_path}', row {line}: {id_column} {error}; use a plain name") from error
    return slide_id
