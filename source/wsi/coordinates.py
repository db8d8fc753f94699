"""Region coordinates in hs2p's own format: ``<slide_id>.coordinates.npz`` + ``<slide_id>.coordinates.meta.json``.

Every whole-slide run writes them under ``<run_dir>/coordinates/``; ``coordinates_dir`` reads them
back (from this project or from the HS2P tiler, whose batch runs keep them in ``tiles/``), so later
runs encode exactly the same regions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from source.data.regions import BadInputError
from source.io import safe_join
from source.wsi.settings import TilingSettings

META_SUFFIX = ".coordinates.meta.json"
NPZ_SUFFIX = ".coordinates.npz"


def coordinate_files(folder: Path, slide_id: str) -> Optional[tuple[Optional[Path], Path]]:
    """``(npz or None, meta)`` of a slide in ``folder`` or ``folder/tiles``; ``None`` when there is no meta file.

    The npz is ``None`` for a slide hs2p found no region in (it writes only the meta file then).
    """
    for candidate in (Path(folder), Path(folder) / "tiles"):
        meta = safe_join(candidate, slide_id, META_SUFFIX)
        if meta.is_file():
            npz = safe_join(candidate, slide_id, NPZ_SUFFIX)
            return (npz if npz.is_file() else None), meta
    return None


def load_coordinates(folder: Path, slide_id: str):
    """hs2p's ``TilingResult`` saved for ``slide_id`` in ``folder``, or ``None`` when there is none.

    Raises:
        BadInputError: the files exist but cannot be read.
    """
    from hs2p import load_tiling_result

    files = coordinate_files(folder, slide_id)
    if files is None:
        return None
    try:
        return load_tiling_result(*files)
    except (ValueError, OSError, KeyError) as error:
        raise BadInputError(
            f"coordinates of slide '{slide_id}' in {files[1].parent} cannot be read: {error}"
        ) from error


def save_coordinates(result, folder: Path) -> Path:
    """Write ``result`` to ``folder/<slide_id>.coordinates.{npz,meta.json}`` (atomically, by hs2p); returns the meta
    path."""
    from hs2p import save_tiling_result

    return save_tiling_result(result, output_dir=folder, tiles_dir=folder).coordinates_meta_path


def check_matches_settings(result, source: Path, settings: TilingSettings, region_size: int) -> None:
    """Refuse coordinates made for another region size or spacing than this run's.

    Raises:
        BadInputError: naming the saved and the current values.
    """
    saved_size, saved_spacing = int(result.requested_tile_size_px), float(result.requested_spacing_um)
    if saved_size != region_size or not math.isclose(saved_spacing, settings.spacing, rel_tol=1e-6):
        raise BadInputError(
            f"coordinates in {source} were made for {saved_size}-px regions at {saved_spacing} um/px, but this run "
            f"asks for region_size={region_size} at tiling.spacing={settings.spacing}: make the two agree or tile "
            "again (drop coordinates_dir)"
        )


def same_regions(first, second) -> bool:
    """True when two tiling results list the same regions, in the same order, with the same footprint and read level."""
    return (
        np.array_equal(np.asarray(first.x), np.asarray(second.x))
        and np.array_equal(np.asarray(first.y), np.asarray(second.y))
        and int(first.tile_size_lv0) == int(second.tile_size_lv0)
        and int(first.read_level) == int(second.read_level)
        and int(first.read_tile_size_px) == int(second.read_tile_size_px)
    )
