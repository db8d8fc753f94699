"""Find slides and their regions in the extraction layout and decode region images.

Layout (the HS2P tiler's)::

    region_dir/<slide_id>/imgs/<x>_<y>.<format>     level-0 pixel coordinates of the region's corner
    region_dir/<slide_id>/<slide_id>.h5             optional, not needed
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from source.errors import UserError
from source.io import UnsafePathError, safe_join

REGION_NAME = re.compile(r"^(\d+)_(\d+)$")
SLIDE_SUFFIXES = {
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".mrxs",
    ".scn",
    ".vms",
    ".vmu",
    ".bif",
    ".czi",
    ".svslide",
    ".dcm",
    ".isyntax",
}
"""Suffixes that mark a ``slide_list`` line as a slide file path (its stem is the slide id)."""


class BadInputError(UserError, ValueError):
    """An input slide or region is unusable; the message names the file and the reason."""


@dataclass(frozen=True)
class Region:
    """One region: its level-0 corner (x, y) and, for ``region_dir`` input, its image file."""

    x: int
    y: int
    path: Optional[Path] = None


def read_slide_list(path: str | Path) -> list[str]:
    """Slide ids listed in a text file, one per line, in file order, duplicates dropped.

    Blank lines and lines starting with ``#`` are skipped. A line ending with a slide-file suffix
    (``.svs``, ``.tif``, ...) is a path: its file stem is the id. Any other line is an id as written.
    """
    ids: list[str] = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        slide_id = Path(line).stem if Path(line).suffix.lower() in SLIDE_SUFFIXES else line
        if slide_id not in ids:
            ids.append(slide_id)
    return ids


def discover_slide_ids(region_dir: str | Path, slide_list: Optional[str | Path] = None) -> list[str]:
    """Slide ids to process: those of ``slide_list`` if given, else every sub-folder of ``region_dir``, sorted."""
    if slide_list is not None:
        return read_slide_list(slide_list)
    return sorted(
        entry.name for entry in Path(region_dir).iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )


def parse_region_name(path: Path) -> tuple[int, int]:
    """``<x>_<y>.<ext>`` -> ``(x, y)``; raise :class:`BadInputError` for any other name."""
    match = REGION_NAME.match(path.stem)
    if match is None:
        raise BadInputError(
            f"region file '{path}' is not named <x>_<y>.{path.suffix.lstrip('.')} (level-0 coordinates)"
        )
    return int(match.group(1)), int(match.group(2))


def list_regions(region_dir: str | Path, slide_id: str, image_format: str) -> list[Region]:
    """The regions of one slide, ordered by numeric x, then y.

    Raises:
        BadInputError: the slide id is not a plain name, the slide has no ``imgs/`` folder, no image
            of ``image_format``, or a file name that is not ``<x>_<y>``.
    """
    try:
        slide_dir = safe_join(region_dir, slide_id)
    except UnsafePathError as error:
        raise BadInputError(f"slide id {error}") from error
    images_dir = slide_dir / "imgs"
    if not images_dir.is_dir():
        where = "the slide folder does not exist" if not slide_dir.is_dir() else "it has no imgs/ folder"
        raise BadInputError(f"slide '{slide_id}': {where} (expected {images_dir}/<x>_<y>.{image_format})")
    suffix = "." + image_format.lower().lstrip(".")
    files = [p for p in images_dir.iterdir() if p.suffix.lower() == suffix and not p.name.startswith(".")]
    if not files:
        raise BadInputError(f"slide '{slide_id}': no .{suffix.lstrip('.')} images in {images_dir} (check format)")
    regions = [Region(*parse_region_name(p), p) for p in files]
    return sorted(regions, key=lambda region: (region.x, region.y))


def read_region(path: str | Path, region_size: int) -> np.ndarray:
    """Decode one region image to RGB.

    Args:
        path: image file.
        region_size: expected side R in pixels.

    Returns:
        ``(R, R, 3)`` uint8 array.

    Raises:
        BadInputError: unreadable or truncated file, not square, or not ``region_size`` px.
    """
    try:
        with Image.open(path) as image:
            image.load()
            pixels = np.array(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadInputError(
            f"region '{path}' cannot be decoded ({error}): the file is unreadable or truncated"
        ) from error
    height, width = pixels.shape[:2]
    if height != width:
        raise BadInputError(f"region '{path}' is {width}x{height} px, not square")
    if height != region_size:
        raise BadInputError(
            f"region '{path}' is {width}x{height} px but region_size is {region_size}: set region_size={height}"
        )
    return pixels
