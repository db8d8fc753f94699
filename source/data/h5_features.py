"""Slide features as HDF5, the layout CLAM and TRIDENT use: a ``features`` dataset ``(N, D)`` and ``coords``
``(N, 2)`` (level-0 x, y of each instance's top-left corner), with the geometry as attributes.

Extraction writes one such file per slide (``save_h5``) so that MIL tools read this project's features; training
reads them (``features_dir`` of ``<slide_id>.h5``) as flat bags of instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from source.io import atomic_path


@dataclass(frozen=True)
class Geometry:
    """Where a slide's features come from: the region side in pixels, its footprint in level-0 pixels, the spacing
    (um/px) the regions were read at (None when unknown: region images cut beforehand), the patch side."""

    region_size: int
    tile_size_lv0: int
    patch_size: int
    spacing: Optional[float] = None


def instance_coords(corners: Sequence[tuple[int, int]], grid: int, tile_size_lv0: int) -> np.ndarray:
    """Level-0 corners of every instance: the regions' own (``grid`` 0: global features), or for ``grid`` n the
    n * n patches of each region in row-major order (patch ``r * n + c`` of region (x, y) at
    ``(x + c * s, y + r * s)``, s = the patch footprint ``tile_size_lv0 // n``).

    Returns:
        ``(M, 2)`` or ``(M * n * n, 2)`` int64.
    """
    regions = np.asarray(corners, dtype=np.int64).reshape(-1, 2)
    if not grid:
        return regions
    step = tile_size_lv0 // grid
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    offsets = np.stack([cols * step, rows * step], axis=1)
    return (regions[:, None, :] + offsets[None]).reshape(-1, 2)


def write_h5_features(
    path: Path, features: torch.Tensor, corners: Sequence[tuple[int, int]], geometry: Geometry
) -> Path:
    """Write ``features`` (``(M, D)`` global, or ``(M, n*n, D)`` local, stored flat as ``(M * n * n, D)``) with their
    level-0 ``coords`` and the attributes ``patch_size_level0`` (an instance's footprint), ``region_size``,
    ``patch_size``, ``spacing`` and ``level``; atomically (temporary name, then rename)."""
    import h5py

    grid = int(round(features.shape[1] ** 0.5)) if features.dim() == 3 else 0
    flat = features.reshape(-1, features.shape[-1]).float().cpu().numpy()
    coords = instance_coords(corners, grid, geometry.tile_size_lv0)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
        handle.create_dataset("features", data=flat)
        handle.create_dataset("coords", data=coords)
        handle.attrs["patch_size_level0"] = geometry.tile_size_lv0 // grid if grid else geometry.tile_size_lv0
        handle.attrs["region_size"] = geometry.region_size
        handle.attrs["patch_size"] = geometry.patch_size
        handle.attrs["spacing"] = np.nan if geometry.spacing is None else float(geometry.spacing)
        handle.attrs["level"] = "local" if grid else "global"
    return path


def read_h5_features(path: Path) -> torch.Tensor:
    """The ``features`` of a CLAM / TRIDENT / this project's h5 as float32 ``(N, D)`` (a leading batch axis of 1 is
    dropped).

    Raises:
        ValueError: no ``features`` dataset, or one that is not ``(N, D)``.
        OSError: not an HDF5 file.
    """
    import h5py

    with h5py.File(path, "r") as handle:
        if "features" not in handle:
            raise ValueError(f"no 'features' dataset (it has {sorted(handle.keys())})")
        array = np.asarray(handle["features"])
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"'features' has shape {array.shape}, not (N, D)")
    return torch.from_numpy(array.astype(np.float32))
