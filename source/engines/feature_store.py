"""Where extraction writes features: ``features/slide/<slide_id>.pt``, ``features/region/<slide_id>_<x>_<y>.pt`` and
``features/h5/<slide_id>.h5``."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from source.data.h5_features import Geometry, write_h5_features
from source.data.regions import Region
from source.io import atomic_torch_save, safe_join

logger = logging.getLogger(__name__)


class FeatureStore:
    """Atomic, resumable feature files of one run.

    Args:
        run_dir: the run folder.
        save_region_features: also write one file per region.
        h5: also write ``features/h5/<slide_id>.h5`` (CLAM / TRIDENT layout) with this geometry; its
            ``tile_size_lv0`` is the default footprint, replaced by each slide's own when :meth:`write` is given one.
    """

    def __init__(self, run_dir: Path, save_region_features: bool = False, h5: Optional[Geometry] = None) -> None:
        self.slide_dir = run_dir / "features" / "slide"
        self.region_dir = run_dir / "features" / "region"
        self.h5_dir = run_dir / "features" / "h5"
        self.tissue_dir = run_dir / "features" / "tissue"
        self.save_region_features = save_region_features
        self.h5 = h5

    def slide_path(self, slide_id: str) -> Path:
        """The slide's feature file (raises UnsafePathError for a slide id that is not a plain name)."""
        return safe_join(self.slide_dir, slide_id, ".pt")

    def tissue_path(self, slide_id: str) -> Path:
        """The slide's ``(M, n*n)`` tissue fractions of each region's patches."""
        return safe_join(self.tissue_dir, slide_id, ".pt")

    def h5_path(self, slide_id: str) -> Path:
        """The slide's h5 file."""
        return safe_join(self.h5_dir, slide_id, ".h5")

    def region_path(self, slide_id: str, region: Region) -> Path:
        """The region's feature file."""
        return safe_join(self.region_dir, f"{slide_id}_{region.x}_{region.y}", ".pt")

    def is_complete(self, slide_id: str, regions: Sequence[Region]) -> bool:
        """True when the slide's file exists with one row per region (and its region files, if asked).

        The slide file is written last, atomically, so its presence means the slide finished; its row
        count is read lazily (memory-mapped) to catch a slide whose regions changed since.
        """
        path = self.slide_path(slide_id)
        if not path.exists():
            return False
        try:
            rows = torch.load(path, map_location="cpu", weights_only=True, mmap=True).shape[0]
        except (RuntimeError, OSError, ValueError, AttributeError) as error:
            logger.warning("%s is unreadable (%s): recomputing slide %s", path, error, slide_id)
            return False
        if rows != len(regions):
            logger.warning(
                "%s has %d rows but slide %s has %d regions now: recomputing", path, rows, slide_id, len(regions)
            )
            return False
        if not self.tissue_path(slide_id).exists():
            return False
        if self.h5 is not None and not self.h5_path(slide_id).exists():
            return False
        if self.save_region_features:
            return all(self.region_path(slide_id, region).exists() for region in regions)
        return True

    def files(self, slide_id: str, regions: Sequence[Region]) -> list[Path]:
        """Every file :meth:`write` wrote for the slide: the slide file, its tissue fractions, the h5 and region files
        when asked (what a shared run's record lists)."""
        paths = [self.slide_path(slide_id), self.tissue_path(slide_id)]
        if self.h5 is not None:
            paths.append(self.h5_path(slide_id))
        if self.save_region_features:
            paths += [self.region_path(slide_id, region) for region in regions]
        return paths

    def remove_stale_temporaries(self, slide_id: str) -> int:
        """Delete temporaries a killed run left for this slide (``.<name>.pt.<random>.tmp``); returns how many."""
        slide_name = re.compile(rf"^\.{re.escape(slide_id)}\.pt\..*\.tmp$")
        region_name = re.compile(rf"^\.{re.escape(slide_id)}_\d+_\d+\.pt\..*\.tmp$")
        h5_name = re.compile(rf"^\.{re.escape(slide_id)}\.h5\..*\.tmp$")
        removed = 0
        folders = ((self.slide_dir, slide_name), (self.tissue_dir, slide_name), (self.region_dir, region_name))
        for folder, pattern in (*folders, (self.h5_dir, h5_name)):
            if folder.is_dir():
                for path in folder.iterdir():
                    if pattern.match(path.name):
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed

    def write(
        self,
        slide_id: str,
        regions: Sequence[Region],
        features: torch.Tensor,
        tile_size_lv0: Optional[int] = None,
        tissue: Optional[torch.Tensor] = None,
    ) -> Path:
        """Write a slide's features ``(M, ...)`` (row i = ``regions[i]``); region files, the tissue fractions
        ``(M, n*n)`` and the h5 first, the slide file last (its presence marks the slide done). ``tile_size_lv0``:
        the slide's region footprint at level 0."""
        if tissue is not None:
            atomic_torch_save(tissue.float().contiguous(), self.tissue_path(slide_id))
        if self.save_region_features:
            for region, row in zip(regions, features, strict=True):
                atomic_torch_save(row.clone(), self.region_path(slide_id, region))
        if self.h5 is not None:
            geometry = replace(self.h5, tile_size_lv0=tile_size_lv0) if tile_size_lv0 else self.h5
            write_h5_features(self.h5_path(slide_id), features, [(r.x, r.y) for r in regions], geometry)
        path = self.slide_path(slide_id)
        atomic_torch_save(features.contiguous(), path)
        return path
